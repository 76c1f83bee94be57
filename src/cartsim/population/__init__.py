"""Virtual cohorts and virtual trials on the batched in-vivo model.

>>> from cartsim.population import load_trial, run_trial
>>> result = run_trial(load_trial("zuma-1", n=200))      # doctest: +SKIP
>>> result.summary["orr_pct"], result.summary["orr_ci95"]  # doctest: +SKIP

Status: trial specs, presets, sampling, chunked/resumable runs and endpoints are here;
the speed target (1e5 patients in seconds), in-solve summaries and the population
calibration (``cartsim calibrate``) are still open (see the issue).
"""

from cartsim.population.endpoints import summarise_trial, wilson
from cartsim.population.sampling import sample_patient
from cartsim.population.spec import TrialSpec, list_trials, load_trial
from cartsim.population.trial import TrialResult, run_trial

__all__ = ["TrialResult", "TrialSpec", "list_trials", "load_trial", "run_trial", "sample_patient",
           "summarise_trial", "wilson"]
