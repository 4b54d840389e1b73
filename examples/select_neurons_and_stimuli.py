"""Select neurons and stimuli by predicate and by string query, on both sides.
===========================================================================

Loads a simulated CRCNS AA2 release (zebra finch MLd, OV, Field L and CM, three stimulus
classes, ragged coverage: not every cell heard song ripples) and shows:

- neurons chosen by a Python predicate and by a string query over their metadata;
- neurons chosen by the stimuli they heard;
- stimuli chosen by predicate and by query, and how a stimulus selection hides the neurons
  without data on those stimuli (the bidirectional rule);
- batches of the result with a DataLoader.

Usage::

    python examples/select_neurons_and_stimuli.py [FOLDER]

FOLDER receives the simulated release and its cache (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from torch.utils.data import DataLoader

from deepstrf.datasets.audio import CRCNSAA2Dataset
from deepstrf.testing.fixtures import write_crcns_aa2
from deepstrf.utils.data import neural_collate


def cells(ds: CRCNSAA2Dataset) -> str:
    """The neurons in use, as 'cell_id (area)'."""
    return ", ".join(f"{m['cell_id']} ({m['area']})" for m in ds.get_nrn_meta())


def main(folder: Path) -> None:
    root = folder / "AA2"
    write_crcns_aa2(root / "raw", n_cells=9, n_conspecific=4, n_flatrip=3, n_songrip=3,
                    duration_range_s=(0.4, 0.8), seed=5)
    ds = CRCNSAA2Dataset(root, dt_ms=5, smooth=False, progress=False)
    ds.compute_neuron_quality()  # adds 'snr' and 'ccmax' to every nrn_meta entry
    print(ds)

    print("\n-- neurons, by predicate over nrn_meta")
    ds.select_pop_by_nrn_predicate(lambda n: n["area_group"] == "Field_L" and n["snr"] > 0.3)
    print(f"Field L with snr > 0.3: {cells(ds)}; {len(ds)} stimuli")

    print("\n-- neurons, by string query over nrn_meta")
    ds.select_pop_by_nrn_query("area in ('L1', 'L2a', 'L2b', 'L3') or area_group == 'MLd'")
    print(f"L1-L3 or MLd: {cells(ds)}")
    ds.select_pop_by_nrn_query("area_group != 'Field_L' and not snr < 0.1")
    print(f"outside Field L, snr >= 0.1: {cells(ds)}")

    print("\n-- neurons, by the stimuli they heard")
    ds.select_pop_by_stim_query("type == 'songrip'")
    print(f"song-ripple listeners: {cells(ds)}")
    ds.reset_pop_selection()

    print("\n-- stimuli, by predicate and by query over stim_meta")
    chosen = ds.select_stims_by_predicate(lambda s: s["duration_s"] < 0.5)
    print(f"shorter than 0.5 s: stimuli {chosen}; {len(ds.selected_neurons)} neurons in use")
    chosen = ds.select_stims_by_query("type == 'songrip' and duration_s >= 0.5")
    print(f"song ripples of 0.5 s or more: stimuli {chosen}; neurons in use (the others never "
          f"heard them): {len(ds.selected_neurons)} of {ds.get_N()}")

    print("\n-- both sides at once, then batches")
    ds.select_pop_by_nrn_query("area_group in ('Field_L', 'CM')")
    ds.select_stims_by_query("type in ('conspecific', 'songrip')")
    print(f"Field L and CM on songs and song ripples: {len(ds.selected_neurons)} neurons, "
          f"{len(ds)} stimuli {ds.iterable_stims}")
    for batch in DataLoader(ds, batch_size=4, collate_fn=neural_collate):
        print("  batch", tuple(batch["responses"].shape), [m["type"] for m in batch["stim_meta"]])

    ds.reset_pop_selection()
    ds.reset_stim_selection()
    print(f"\nafter reset: {len(ds.selected_neurons)} neurons, {len(ds)} stimuli")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("folder", nargs="?", type=Path,
                        help="where to write the simulated data (default: a temporary folder)")
    args = parser.parse_args()
    # The simulated release is smaller than the real one, which the loader would report.
    logging.getLogger("deepstrf").setLevel(logging.ERROR)
    if args.folder is not None:
        main(args.folder)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
