"""Concatenate CRCNS AA1 and AA2 and select across the two sources.
================================================================

Both releases come from the same lab and format, and both are loaded here with the same bin
width and number of mel bands, so they can be joined: the result has the stimuli and the
neurons of both, with a block-diagonal response grid (AA1 cells never heard AA2 stimuli and
the reverse). Every entry is tagged with its source in a "dataset" key, and metadata filters
skip entries that lack a key, so one query can address both metadata schemas (AA1 has
'area' = Field_L / MLd; AA2 has 'area' = L, L1, ..., mld, OV, CM and 'area_group').

Usage::

    python examples/concat_aa1_aa2.py [FOLDER]

FOLDER receives the two simulated releases and their caches (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from torch.utils.data import DataLoader

from deepstrf.datasets.audio import CRCNSAA1Dataset, CRCNSAA2Dataset
from deepstrf.testing.fixtures import write_crcns_aa1, write_crcns_aa2
from deepstrf.utils.data import neural_collate


def main(folder: Path) -> None:
    write_crcns_aa1(folder / "AA1" / "raw", n_cells=6, seed=1)
    write_crcns_aa2(folder / "AA2" / "raw", n_cells=6, seed=2)
    # Same dt_ms and n_mels (32 by default): the two can be concatenated.
    aa1 = CRCNSAA1Dataset(folder / "AA1", dt_ms=5, progress=False)
    aa2 = CRCNSAA2Dataset(folder / "AA2", dt_ms=5, progress=False)
    print(aa1)
    print(aa2)

    both = aa1 + aa2  # or deepstrf.utils.data.concat_neural_datasets([aa1, aa2], names=[...])
    print(both)
    print("sources:", sorted({m["dataset"] for m in both.nrn_meta}))
    masks = both.nrn_masks
    print(f"pairs with data: {int(masks.sum())} of {masks.numel()} (block diagonal: "
          f"{int(masks[:aa1.get_S(), :aa1.get_N()].sum())} AA1 + "
          f"{int(masks[aa1.get_S():, aa1.get_N():].sum())} AA2)")

    # One query across both schemas: AA1 neurons have no 'area_group' (unknown), but
    # 'True or unknown' is True, so their Field L cells are kept too.
    both.select_pop_by_nrn_query("area == 'Field_L' or area_group == 'Field_L'")
    print("Field L neurons from both sources:",
          [f"{m['dataset']}:{m['cell_id']}" for m in both.get_nrn_meta()])

    # Stimuli of one class from both releases; the bidirectional rule keeps the neurons above.
    both.select_stims_by_query("type == 'conspecific'")
    print(f"conspecific songs of both releases: {len(both)} stimuli, "
          f"{len(both.selected_neurons)} Field L neurons in use")
    for batch in DataLoader(both, batch_size=8, collate_fn=neural_collate):
        print("  batch", tuple(batch["responses"].shape),
              sorted({m["dataset"] for m in batch["stim_meta"]}))

    # The source tag selects one release.
    both.reset_pop_selection()
    both.select_stims_by_attr("dataset", "CRCNSAA2Dataset")
    print(f"AA2 stimuli only: {len(both)} stimuli, {len(both.selected_neurons)} neurons "
          f"(all from {sorted({m['dataset'] for m in both.get_nrn_meta()})})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("folder", nargs="?", type=Path,
                        help="where to write the simulated data (default: a temporary folder)")
    args = parser.parse_args()
    # The simulated releases are smaller than the real ones, which the loaders would report.
    logging.getLogger("deepstrf").setLevel(logging.ERROR)
    if args.folder is not None:
        main(args.folder)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
