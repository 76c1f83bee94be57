"""Fit the ``calibrated`` manufacturing parameters to their published targets.

Run ``python -m cartsim.manufacturing.calibrate`` (needs scipy, a test dependency). It
prints the fitted values; copy them into ``params/data/manufacturing_parameters.csv``
and ``params/data/manufacturing/central.yaml`` (rows marked ``calibrated``). Targets are
in ``params/data/manufacturing_targets.csv``:

========================================  ==============================================
parameter                                 target
========================================  ==============================================
culture.growth_rate                       30-fold expansion of the typical batch in 13 d
                                          (Zhu 2018, Prodigy TCT, IL-2)
fitness.log_sd                            central OOS for low dose = 52.9% x 12%
viability.cryo_logit_loss                 central OOS for viability = 38% x 12%
potency.log_sd                            central OOS for potency = 11.8% x 12%
fitness.activation_failure_probability    central first-attempt failure = 4.1% (mean of the
                                          nine published commercial failure rates)
central logistics.slot_wait (mean)        central apheresis-to-release median 25 d
========================================  ==============================================

The 12% OOS total is the mean of liso-cel (8%) and cilta-cel (16%); the split by reason
is cilta-cel's (Blood 2025;146(Suppl 1):405). The OOS total, the point-of-care rates and
all durations other than the central median are then checks, not targets. All fits use
the default (lbcl) population, harvest day 8, and common random numbers (one seed), so
each objective is a smooth function of its parameter.
"""

from __future__ import annotations

from cartsim.manufacturing.process import load_process, manufacturing_parameters, manufacturing_targets
from cartsim.manufacturing.run import manufacture, typical_batch

CALIBRATED = ("culture.growth_rate", "fitness.log_sd", "viability.cryo_logit_loss", "potency.log_sd",
              "fitness.activation_failure_probability")
N_CAL = 200_000
SEED = 20240


def fit(n: int = N_CAL, seed: int = SEED, rounds: int = 3, verbose: bool = True) -> dict[str, float]:
    from scipy.optimize import brentq

    tg = manufacturing_targets()
    p = manufacturing_parameters()
    central = load_process("central")
    oos_total = tg.value("oos.target")
    goal = {"low_dose": tg.value("oos.share_low_dose") / 100 * oos_total,
            "viability": tg.value("oos.share_viability") / 100 * oos_total,
            "potency": tg.value("oos.share_potency") / 100 * oos_total}

    def fold13(rate: float) -> float:
        q = p.replace({"culture.growth_rate": rate}, source="calibration", evidence="calibrated")
        return typical_batch("poc", harvest_day=13, params=q).attributes["fold_expansion"][0]

    def oos_share(name: str, reason: str, proc=central):
        def f(v: float) -> float:
            q = p.replace({name: v}, source="calibration", evidence="calibrated")
            return manufacture(proc, n, seed, params=q).summary()["oos_reasons_pct"][reason] - goal[reason]
        return f

    for _ in range(rounds):
        rate = brentq(lambda r: fold13(r) - tg.value("fold.zhu2018_13d"), 0.05, 2.0, xtol=1e-5)
        p = p.replace({"culture.growth_rate": rate}, source="calibration", evidence="calibrated")
        for name, reason, lo, hi in (("fitness.log_sd", "low_dose", 0.05, 2.5),
                                     ("viability.cryo_logit_loss", "viability", 0.0, 3.0),
                                     ("potency.log_sd", "potency", 0.05, 2.0)):
            v = brentq(oos_share(name, reason), lo, hi, xtol=1e-4)
            p = p.replace({name: v}, source="calibration", evidence="calibrated")
        def failure_gap(v: float) -> float:
            q = p.replace({"fitness.activation_failure_probability": v}, source="calibration", evidence="calibrated")
            return manufacture(central, n, seed, params=q).summary()["failure_pct"] - tg.value("failure.target")

        v = brentq(failure_gap, 0.0, 0.2, xtol=1e-5)
        p = p.replace({"fitness.activation_failure_probability": v}, source="calibration", evidence="calibrated")
        if verbose:
            print({k: round(p.value(k), 4) for k in CALIBRATED})

    def median_gap(mean_wait: float) -> float:
        proc = central.with_(logistics={"slot_wait": {**central.logistics.slot_wait.model_dump(), "value": mean_wait}})
        return manufacture(proc, n, seed, params=p).summary()["duration_days_median"] - \
            tg.value("central.apheresis_to_release_median")

    wait = brentq(median_gap, 0.0, 20.0, xtol=1e-3) if median_gap(0.0) < 0 else 0.0
    out = {k: p.value(k) for k in CALIBRATED}
    out["central.logistics.slot_wait"] = wait
    return out


if __name__ == "__main__":  # pragma: no cover
    for k, v in fit().items():
        print(f"{k} = {v:.4g}")
