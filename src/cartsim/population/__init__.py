"""Virtual cohorts and virtual trials on the batched in-vivo model.

>>> from cartsim.population import load_trial, run_trial
>>> result = run_trial(load_trial("zuma-1", n=200))      # doctest: +SKIP
>>> result.summary["orr_pct"], result.summary["orr_ci95"]  # doctest: +SKIP

Trial specs and presets (:mod:`~cartsim.population.spec`), virtual patients with
covariates and random effects (:mod:`~cartsim.population.sampling`), chunked resumable
runs on the batched engine (:mod:`~cartsim.population.trial`), endpoints with confidence
intervals (:mod:`~cartsim.population.endpoints`), paired what-if comparisons of two trials
on the same virtual patients, or of one trial at several doses (:mod:`~cartsim.population.compare`,
``cartsim compare``, ``cartsim sweep``) and
the population calibration behind ``cartsim calibrate`` (:mod:`~cartsim.population.calibrate`).
"""

from cartsim.population.compare import compare_trials, dose_sweep
from cartsim.population.endpoints import summarise_trial, wilson
from cartsim.population.sampling import sample_patient
from cartsim.population.spec import TrialSpec, list_trials, load_trial
from cartsim.population.trial import TrialResult, run_trial

__all__ = ["TrialResult", "TrialSpec", "compare_trials", "dose_sweep", "list_trials", "load_trial", "run_trial",
           "sample_patient", "summarise_trial", "wilson"]
