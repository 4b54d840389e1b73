"""Write your own dataset class for data deepstrf does not ship.
=============================================================

Simulates an experiment the library knows nothing about: two recording sessions of neurons
with a best frequency, listening to sequences of tone pips; the first session heard only four
of the six stimuli, so coverage is ragged. The data become a deepstrf dataset in
two ways:

1. a subclass of ``AudioNeuralDataset`` whose constructor fills the contract's plain lists
   (missing pairs as (1, 1) NaN tensors) and calls ``validate()``;
2. ``AudioNeuralDataset.from_data`` on the same tensors, without a class.

Then it shows ``validate()`` catching a mistake, and batches the data with a DataLoader.
Nothing is written to disk.

Usage::

    python examples/own_dataset_class.py
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from deepstrf.datasets.audio import AudioNeuralDataset
from deepstrf.metrics import snr
from deepstrf.utils.data import neural_collate

N_BANDS = 16
NAN_PAIR = float("nan")


def tone_pips(n_bins: int, gen: torch.Generator) -> torch.Tensor:
    """A (1, F, T) spectrogram: 20 ms tone pips at random bands, every 50 ms."""
    spec = torch.zeros(1, N_BANDS, n_bins)
    for start in range(0, n_bins - 4, 10):
        band = int(torch.randint(0, N_BANDS, (1,), generator=gen))
        spec[0, band, start:start + 4] = 1.0
    return spec


class TonePipDataset(AudioNeuralDataset):
    """Simulated responses of tuned neurons to tone-pip sequences, from two sessions.

    Parameters
    ----------
    n_neurons : int
        Neurons per session.
    n_repeats : int
        Repeats of each stimulus.
    dt_ms : float
        Bin width, ms.
    seed : int
        Seed of the simulation.
    """

    def __init__(self, n_neurons: int = 5, n_repeats: int = 8, dt_ms: float = 5.0,
                 seed: int = 0):
        super().__init__(path=None, dt_ms=dt_ms)
        gen = torch.Generator().manual_seed(seed)
        self.F = N_BANDS
        lengths = (200, 240, 160, 300, 220, 180)                  # bins: 1.0 s to 1.5 s
        self.stims = [tone_pips(T, gen) for T in lengths]
        self.stim_meta = [{"name": f"pips{s}", "duration_s": T * dt_ms / 1000,
                           "session_played": "both" if s < 4 else "second"}
                          for s, T in enumerate(lengths)]
        self.nrn_meta = []
        for session in (1, 2):
            for k in range(n_neurons):
                best = int(torch.randint(0, N_BANDS, (1,), generator=gen))
                self.nrn_meta.append({"cell_id": f"s{session}n{k}", "session": session,
                                      "best_band": best})
        self.N_neurons = len(self.nrn_meta)
        self.responses = []
        for s, stim in enumerate(self.stims):
            row = []
            for meta in self.nrn_meta:
                if meta["session"] == 1 and s >= 4:               # session 1 never heard it
                    row.append(torch.full((1, 1), NAN_PAIR))
                    continue
                drive = stim[0, meta["best_band"]]                # responds to its band,
                rate = 0.05 + 0.8 * torch.roll(drive, 2)          # 10 ms after the pip
                row.append(torch.poisson(rate.expand(n_repeats, -1), generator=gen))
            self.responses.append(row)
        self.validate()  # checks the contract and packs the lists


def main() -> None:
    ds = TonePipDataset()
    print(ds)
    print("coverage (stimuli x neurons):")
    for s, row in enumerate(ds.nrn_masks.int().tolist()):
        print(f"  {ds.stim_meta[s]['name']}: {row}")

    # The same data without a class.
    same = AudioNeuralDataset.from_data(ds.stims, [list(row) for row in ds.responses],
                                        dt_ms=ds.dt, stim_meta=ds.stim_meta,
                                        nrn_meta=ds.nrn_meta)
    print("from_data:", same, "F =", same.F)

    # validate() names the mistake: here responses one bin shorter than their stimulus.
    broken = [list(row) for row in ds.responses]
    broken[0] = [r[:, :-1] for r in broken[0]]
    try:
        AudioNeuralDataset.from_data(ds.stims, broken, dt_ms=ds.dt)
    except ValueError as err:
        print("validate() caught:", err)

    # Everything else works as for the public datasets: selection, batching, metrics.
    ds.select_stims_by_query("session_played == 'second'")
    print(f"stimuli only the second session heard: {ds.iterable_stims}; neurons in use: "
          f"{[m['cell_id'] for m in ds.get_nrn_meta()]}")
    ds.reset_stim_selection()
    loader = DataLoader(ds, batch_size=3, collate_fn=neural_collate)
    for batch in loader:
        ratio = snr(batch["responses"], reduction="median")
        print(f"  batch stims {tuple(batch['stims'].shape)} responses "
              f"{tuple(batch['responses'].shape)} valid {int(batch['valid_mask'].sum())} "
              f"median SNR {ratio:.2f}")


if __name__ == "__main__":
    main()
