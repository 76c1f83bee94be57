"""Population calibration: target rules, comparison and objective (no fitting here)."""

import pytest

from cartsim.params import InputError
from cartsim.population import calibrate as C


def test_calibration_targets_are_verified_or_secondary():
    targets = C.load_targets()
    cal = [t for t in targets if t.role == "calibration"]
    assert cal, "no calibration targets"
    assert all(t.evidence in ("verified", "secondary") for t in cal)
    # the held-out trial is never a calibration target
    assert not any(t.trial == "juliet" and t.role == "calibration" for t in targets)


def test_unverified_calibration_target_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "population_targets.csv"
    bad.write_text("trial,endpoint,published,n,role,scale,evidence,source,notes\n"
                   "zuma-1,crs_any_pct,93,101,calibration,Lee 2014,unverified,x,\n")
    monkeypatch.setattr(C, "data_path", lambda *parts: bad)
    with pytest.raises(InputError, match="verified or secondary"):
        C.load_targets()


def test_published_ci_and_objective():
    t = C.Target("karmma", "orr_pct", 73.0, 128, "calibration", "", "verified", "s", "")
    lo, hi = t.published_ci()
    assert lo < 73 < hi and hi - lo < 20
    summary = {"karmma": {"orr_pct": 73.0, "orr_ci95": [65.0, 80.0], "n_evaluated": 100}}
    (c,) = C.compare([t], summary)
    assert c.within and C.objective([c]) == pytest.approx(0.0, abs=0.01)
    summary["karmma"]["orr_pct"] = 95.0
    (c,) = C.compare([t], summary)
    assert c.within is False and C.objective([c]) > 4


def test_every_target_trial_is_a_preset():
    from cartsim.population import list_trials
    from cartsim.population.compare import dose_rule

    assert {t.trial.partition("@")[0] for t in C.load_targets()} <= set(list_trials())
    for t in C.load_targets():  # a dose-level row names a dose the command line accepts
        if "@" in t.trial:
            dose_rule(t.trial.partition("@")[2])


def test_free_typical_values_are_parameters_and_are_written_with_provenance(tmp_path, monkeypatch):
    import shutil

    from cartsim.params import data_path, load_parameters

    p = load_parameters()
    for name, (lo, hi) in C.FREE_TYPICAL.items():
        assert lo < hi and name in p
    copy = tmp_path / "parameters.csv"
    shutil.copy(data_path("parameters.csv"), copy)
    monkeypatch.setattr(C, "data_path", lambda *parts: copy)
    name = next(iter(C.FREE_TYPICAL))
    C.write_typical({name: 3.3e-10}, n=10, seed=1)
    from cartsim.params.loader import _read_table

    t = _read_table(copy)
    assert t.value(name) == pytest.approx(3.3e-10) and t[name].evidence == "calibrated"
    assert "cartsim calibrate" in t[name].source
    assert len(t) == len(p)  # every other row kept


def test_a_dose_level_row_runs_its_preset_at_that_dose(monkeypatch):
    seen = {}

    class Result:
        summary = {"orr_pct": 50.0}

    def fake_run(spec, **kw):
        seen[spec.name] = spec.dose
        return Result()

    monkeypatch.setattr(C, "run_trial", fake_run)
    out = C.simulate_trials(["crb-401@5e7", "zuma-1@1e6/kg", "karmma"], 10)
    assert set(out) == {"crb-401@5e7", "zuma-1@1e6/kg", "karmma"}
    assert seen["crb-401"].flat == 5e7 and seen["zuma-1"].per_kg == 1e6
    assert seen["karmma"].levels is not None  # no @: the preset's own dose rule
