"""Virtual trials: determinism across chunk sizes, resume after a kill, failure flagging, schema."""

import json

import pyarrow.parquet as pq
import pytest

import cartsim.population.trial as trial_mod
from cartsim.cli import main
from cartsim.params import InputError
from cartsim.population import list_trials, load_trial, run_trial, wilson

N, DAYS = 6, 40


def _spec(**kw):
    return load_trial("zuma-1", n=N, follow_up_days=DAYS, **kw)


def _rows(result):
    return result.patients.to_pylist()


@pytest.fixture(scope="module")
def reference():
    return run_trial(_spec(chunk_size=3))


def test_same_seed_same_results_whatever_the_chunk_size(reference):
    assert _rows(run_trial(_spec(chunk_size=2))) == _rows(reference)
    assert _rows(run_trial(_spec(chunk_size=6))) == _rows(reference)


def test_different_seed_differs(reference):
    assert _rows(run_trial(_spec(chunk_size=3, seed=1))) != _rows(reference)


class Killed(Exception):
    pass


def test_resume_after_kill_matches_uninterrupted(tmp_path, reference):
    def die_after_first_chunk(done, total):
        if done >= 3:
            raise Killed

    with pytest.raises(Killed):
        run_trial(_spec(chunk_size=3), tmp_path, progress=die_after_first_chunk)
    assert len(list((tmp_path / "chunks").glob("chunk_*.parquet"))) == 1
    resumed = run_trial(_spec(chunk_size=3), tmp_path, resume=True)
    assert _rows(resumed) == _rows(reference)
    assert pq.read_table(tmp_path / "patients.parquet").num_rows == N
    assert json.loads((tmp_path / "summary.json").read_text())["n"] == N


def test_resume_refuses_a_different_spec(tmp_path):
    run_trial(_spec(chunk_size=3), tmp_path)
    with pytest.raises(InputError, match="resume"):
        run_trial(_spec(chunk_size=3, seed=5), tmp_path, resume=True)


def test_failed_patient_is_flagged_not_fatal(monkeypatch, reference):
    real_build = trial_mod.build
    calls = {"n": 0}

    def flaky_build(product, indication, spec, params):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ValueError("synthetic failure")
        return real_build(product, indication, spec, params)

    monkeypatch.setattr(trial_mod, "build", flaky_build)
    res = run_trial(_spec(chunk_size=3))
    rows = _rows(res)
    assert [r["ok"] for r in rows].count(False) == 1
    bad = next(r for r in rows if not r["ok"])
    assert "synthetic failure" in bad["fail_reason"]
    assert res.summary["n_failed"] == 1 and res.summary["n_evaluated"] == N - 1
    good = [r for r in rows if r["ok"]]
    assert good == [r for r in _rows(reference) if r["patient"] != bad["patient"]]


def test_every_preset_loads():
    assert set(list_trials()) >= {"eliana", "juliet", "zuma-1", "karmma", "cartitude-1", "mackensen-2022"}
    for name in list_trials():
        assert load_trial(name).n > 0


@pytest.mark.parametrize("text, field", [
    ("name: x\nindication: lbcl\nproduct: axi-cel\nn: 10\ncolour: red\n", "colour"),
    ("name: x\nindication: lbcl\nproduct: axi-cel\nn: ten\n", ".n"),
    ("name: x\nindication: lbcl\nproduct: axi-cel\nn: 0\n", ".n"),
    ("name: x\nindication: cll\nproduct: axi-cel\nn: 10\n", "indication"),
    ("name: x\nindication: lbcl\nproduct: axi-cel\nn: 5\neligibility: {min_burden: -3}\n", "eligibility.min_burden"),
    ("name: x\nindication: lbcl\nproduct: axi-cel\nn: 5\ndose: {per_kg: 1e6, flat: 1e8}\n", "dose"),
])
def test_schema_errors_name_the_field_path(tmp_path, capsys, text, field):
    f = tmp_path / "t.yaml"
    f.write_text(text)
    assert main(["trial", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert field in err and "\n" not in err


def test_unknown_preset_and_bad_n(tmp_path, capsys):
    assert main(["trial", "zuma-9", "--out", str(tmp_path)]) == 2
    assert main(["trial", "zuma-1", "--n", "0", "--out", str(tmp_path)]) == 2


def test_trial_json_keys(tmp_path, capsys):
    assert main(["trial", "mackensen-2022", "--out", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for k in ["n", "orr_pct", "cr_pct", "crs_any_pct", "crs_grade3plus_pct", "icans_any_pct",
              "icans_grade3plus_pct", "tocilizumab_pct", "median_pfs_days", "cmax_median",
              "tmax_median_days", "n_failed"]:
        assert k in out


def test_wilson_interval():
    lo, hi = wilson(0, 10)
    assert lo == 0 and 25 < hi < 35
    lo, hi = wilson(5, 10)
    assert lo < 50 < hi
