"""A small model kit: a population linear STRF, its ridge fit, gradient training, splits."""

from deepstrf.models.split import split_stimuli
from deepstrf.models.strf import PopulationLinearSTRF, RidgeFit, fit_ridge, lagged
from deepstrf.models.training import fit_gradient

__all__ = ["PopulationLinearSTRF", "RidgeFit", "fit_gradient", "fit_ridge", "lagged",
           "split_stimuli"]
