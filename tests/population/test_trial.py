"""Virtual trials: determinism across chunk sizes, resume after a kill, failure flagging, schema."""

import json

import numpy as np

import pyarrow.parquet as pq
import pytest

import cartsim.population.trial as trial_mod
from cartsim.cli import main
from cartsim.params import InputError, load_parameters
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


def test_bad_patient_is_flagged_not_fatal(monkeypatch, reference):
    real = trial_mod.sample_population

    def one_bad_weight(*args, **kwargs):
        pop = real(*args, **kwargs)
        pop["weight_kg"] = pop["weight_kg"].copy()
        pop["weight_kg"][1] = float("nan")  # the chunk's second patient
        return pop

    monkeypatch.setattr(trial_mod, "sample_population", one_bad_weight)
    res = run_trial(_spec(chunk_size=3))
    rows = _rows(res)
    assert [r["ok"] for r in rows].count(False) == 2  # one per chunk
    bad = [r for r in rows if not r["ok"]]
    assert all("weight_kg" in r["fail_reason"] and "nan" in r["fail_reason"] for r in bad)
    assert all(r["cmax_cells_per_ul"] is None for r in bad)
    assert res.summary["n_failed"] == 2 and res.summary["n_evaluated"] == N - 2
    good = [r for r in rows if r["ok"]]
    assert good == [r for r in _rows(reference) if r["patient"] not in {b["patient"] for b in bad}]


def test_solver_failure_is_flagged_not_fatal(monkeypatch):
    import cartsim.patient.fast_solver as fs

    monkeypatch.setattr(fs, "MAX_STEPS_PER_DAY", 2)  # the expansion phase needs more
    res = run_trial(_spec(chunk_size=3))
    rows = _rows(res)
    assert not any(r["ok"] for r in rows)
    assert all(r["fail_reason"].startswith("solver") for r in rows)
    assert res.summary["n_failed"] == N


def test_numba_and_jax_engines_agree():
    fast = _rows(run_trial(_spec(chunk_size=6)))
    ref = _rows(run_trial(_spec(chunk_size=6), engine="jax"))
    for a, b in zip(fast, ref):
        assert a["crs_max_grade"] == b["crs_max_grade"] and a["icans_max_grade"] == b["icans_max_grade"]
        assert a["response_day28"] == b["response_day28"]
        assert a["cmax_cells_per_ul"] == pytest.approx(b["cmax_cells_per_ul"], rel=0.01)


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
    ("name: x\nindication: lbcl\nproduct: axi-cel\nn: 5\npopulation: {height: {mean: 170}}\n", "population.height"),
    ("name: x\nindication: lbcl\nproduct: axi-cel\nn: 5\npopulation: {age_years: {sd: -2}}\n", "population.age_years"),
    ("name: x\nindication: lbcl\nproduct: axi-cel\nn: 5\neligibility: {max_age: 0}\n", "eligibility.max_age"),
    ("name: x\nindication: mm\nproduct: ide-cel\nn: 5\neligibility: {min_age: 90}\n", "eligibility.min_age"),
    ("name: x\nindication: sle\nproduct: cd19-sle\nn: 5\neligibility: {max_prior_lines: 2}\n", "eligibility.max_prior_lines"),
    ("name: x\nindication: mm\nproduct: ide-cel\nn: 5\neligibility: {min_burden: 50, max_burden: 20}\n", "eligibility.min_burden"),
    ("name: x\nindication: lbcl\nproduct: axi-cel\nn: 5\nsubgroups: [height]\n", "subgroups[0]"),
    ("name: x\nindication: mm\nproduct: ide-cel\nn: 5\nbridging: {bridged_pct: 150}\n", "bridging.bridged_pct"),
    ("name: x\nindication: mm\nproduct: ide-cel\nn: 5\nbridging: {bridged_pct: 80, response_burden_factor: 0}\n",
     "bridging.response_burden_factor"),
    ("name: x\nindication: mm\nproduct: ide-cel\nn: 5\npopulation: {extramedullary_disease: {among: prior_lines}}\n",
     "population.extramedullary_disease.among"),
    ("name: x\nindication: mm\nproduct: ide-cel\nn: 5\ndose: {levels: [{flat: 1e8, pct: 50}, {flat: 3e8, pct: 40}]}\n",
     "dose"),
    ("name: x\nindication: mm\nproduct: ide-cel\nn: 5\ndose: {flat: 1e8, levels: [{flat: 3e8, pct: 100}]}\n", "dose"),
    ("name: x\nindication: mm\nproduct: ide-cel\nn: 5\ndose: {levels: [{flat: 1e8, pct: 0}, {flat: 3e8, pct: 100}]}\n",
     "dose.levels.0.pct"),
    ("name: x\nindication: mm\nproduct: ide-cel\nn: 5\ndose: {levels: [{pct: 100}]}\n", "dose.levels.0"),
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


def test_kinetic_distributions_agree_with_the_headline_figures():
    s = run_trial(load_trial("zuma-1", n=120, follow_up_days=60)).summary
    k = s["kinetics"]
    assert set(k) == {"cmax_cells_per_ul", "cmax_copies_per_ug", "tmax_days", "auc_0_28"}
    assert k["cmax_cells_per_ul"]["median"] == pytest.approx(s["cmax_median"])
    assert k["cmax_cells_per_ul"]["iqr"] == pytest.approx(s["cmax_iqr"])
    assert k["tmax_days"]["median"] == pytest.approx(s["tmax_median_days"])
    d = k["cmax_copies_per_ug"]
    assert d["p5_p95"][0] <= d["iqr"][0] <= d["median"] <= d["iqr"][1] <= d["p5_p95"][1]
    # geometric CV% is the lognormal transform of the SD of ln Cmax
    assert d["geo_cv_pct"] == pytest.approx(100 * np.sqrt(np.expm1(s["cmax_copies_log_sd"] ** 2)))


def test_wilson_interval():
    lo, hi = wilson(0, 10)
    assert lo == 0 and 25 < hi < 35
    lo, hi = wilson(5, 10)
    assert lo < 50 < hi


def test_trajectories_kept_only_for_the_requested_patients(tmp_path):
    res = run_trial(_spec(chunk_size=4, keep_trajectories=[1, 4]), tmp_path)
    t = res.trajectories
    assert sorted(set(t.column("patient").to_pylist())) == [1, 4]
    assert t.num_rows == 2 * (DAYS + 1)
    assert pq.read_table(tmp_path / "trajectories.parquet").num_rows == t.num_rows
    rows = {r["patient"]: r for r in _rows(res)}
    for p in (1, 4):
        day = t.filter(pq_equal(t, p))
        assert max(day.column("car_t_cells_per_ul").to_pylist()) == pytest.approx(rows[p]["cmax_cells_per_ul"])
        assert max(day.column("crs_grade").to_pylist()) == rows[p]["crs_max_grade"]
    assert run_trial(_spec(chunk_size=3)).trajectories is None


def pq_equal(table, patient):
    import pyarrow.compute as pc

    return pc.equal(table.column("patient"), patient)


def test_keep_trajectories_from_the_cli(tmp_path, capsys):
    rc = main(["trial", "zuma-1", "--n", "3", "--out", str(tmp_path), "--keep-trajectories", "2", "--json"])
    assert rc == 0
    t = pq.read_table(tmp_path / "trajectories.parquet")
    assert sorted(set(t.column("patient").to_pylist())) == [0, 1]
    assert main(["trial", "zuma-1", "--n", "3", "--keep-trajectories", "-1"]) == 2
    assert "keep_trajectories" in capsys.readouterr().err


def test_correlated_random_effects():
    from cartsim.population.sampling import sample_population
    from cartsim.population.spec import Correlation

    names = ("kill.gamma", "cart.rho_max")
    corr = [Correlation(between=names, rho=0.8)]
    a = sample_population("lbcl", 1, range(4000), correlations=corr)["random_effects"]
    r = np.corrcoef(np.log(a[names[0]]), np.log(a[names[1]]))[0, 1]
    assert 0.75 < r < 0.85
    b = sample_population("lbcl", 1, range(4000))["random_effects"]
    assert abs(np.corrcoef(np.log(b[names[0]]), np.log(b[names[1]]))[0, 1]) < 0.05
    assert np.array_equal(a["cart.delta_e"], b["cart.delta_e"])  # uncorrelated effects unchanged


@pytest.mark.parametrize("corr, field", [
    ([{"between": ["kill.gamma", "nope"], "rho": 0.5}], "correlations[0].between"),
    ([{"between": ["kill.gamma", "cart.rho_max"], "rho": 1.5}], "correlations"),
    ([{"between": ["kill.gamma", "cart.rho_max"], "rho": 0.9}, {"between": ["kill.gamma", "cart.delta_e"], "rho": 0.9},
      {"between": ["cart.rho_max", "cart.delta_e"], "rho": -0.9}], "correlations"),
])
def test_bad_correlations_name_the_field(corr, field):
    with pytest.raises(InputError, match=field.replace("[", r"\[").replace("]", r"\]")):
        run_trial(load_trial("zuma-1", n=2, correlations=corr))


def test_exposure_spread_and_responder_ratio_endpoints():
    from cartsim.population.endpoints import _geo_ratio, _log_sd

    rng = np.random.default_rng(1)
    x = np.exp(rng.normal(3.0, 0.8, 20000))
    assert _log_sd(x) == pytest.approx(0.8, rel=0.02)
    resp = np.arange(x.size) % 2 == 0
    x2 = np.where(resp, 2.0 * x, x)  # responders expand twice as much
    assert _geo_ratio(x2, resp) == pytest.approx(2.0, rel=0.05)
    assert _geo_ratio(x2, np.zeros(x.size, bool)) is None  # no responders: undefined, not 0
    assert _log_sd(np.array([np.nan, 5.0])) is None


def test_covariates_are_drawn_within_their_ranges_and_eligibility():
    from cartsim.population.sampling import sample_population

    pop = sample_population("mm", 5, np.arange(20000), bounds={"age_years": (None, 70), "prior_lines": (4, None)})
    c = pop["covariates"]
    assert c["age_years"].min() >= 33 and c["age_years"].max() <= 70
    assert c["prior_lines"].dtype.kind == "i" and c["prior_lines"].min() == 4 and c["prior_lines"].max() <= 16
    assert set(np.unique(c["extramedullary_disease"])) == {0, 1}
    assert np.mean(c["extramedullary_disease"]) == pytest.approx(0.39, abs=0.015)
    assert set(c["age_group"]) <= {"18-39", "40-64", ">=65"}
    # eligibility on one covariate leaves the others' draws alone
    free = sample_population("mm", 5, np.arange(20000))["covariates"]
    assert np.array_equal(free["weight_kg"], c["weight_kg"])
    assert np.array_equal(free["extramedullary_disease"], c["extramedullary_disease"])


def test_trial_population_overrides_reach_the_patient_table_and_summary():
    spec = load_trial("karmma", n=400, follow_up_days=30,
                      population={"extramedullary_disease": {"p": 0.1}, "age_years": {"mean": 40, "sd": 3}})
    res = run_trial(spec)
    emd = np.asarray(res.patients.column("extramedullary_disease").to_numpy())
    assert emd.mean() == pytest.approx(0.1, abs=0.04)
    base = res.summary["baseline"]
    assert base["extramedullary_disease_pct"] == pytest.approx(100 * emd.mean())
    assert 37 < base["age_years"]["median"] < 43 and base["age_group_pct"]["18-39"] > 20


def test_efs_counts_treatment_failure_at_the_end_of_the_response_window():
    from cartsim.population.endpoints import _efs, _pfs

    prog = np.array([np.nan, 100.0, np.nan, np.nan])
    responded = np.array([True, True, False, True])
    pfs, efs = _pfs(prog, 365), _efs(prog, responded, 365)
    assert pfs["pfs_365d_pct"] == pytest.approx(75.0)  # one progression
    assert efs["efs_365d_pct"] == pytest.approx(50.0)  # and one treatment failure
    assert efs["median_efs_days"] is None or efs["median_efs_days"] >= 100
    lo, hi = pfs["pfs_365d_ci95"]  # Kaplan-Meier rate at 12 months with its CI
    assert lo < 75.0 < hi <= 100
    assert pfs["pfs_182d_pct"] == pytest.approx(75.0) and efs["efs_182d_pct"] == pytest.approx(50.0)
    assert set(_pfs(prog, 60)) >= {"pfs_60d_pct", "pfs_60d_ci95"}  # landmarks within a short follow-up


def test_medians_of_times_have_distribution_free_confidence_intervals():
    from cartsim.population.endpoints import _km_median, _median_ci, wilson

    x = np.arange(1.0, 101.0)
    lo, hi = _median_ci(x)
    assert lo < np.median(x) < hi and hi - lo < 25  # order statistics around the 50th
    assert _median_ci(np.array([3.0, 4.0])) == [None, None]  # two values cannot bound a median
    assert _median_ci(np.array([])) == [None, None]
    # censored durations: with most patients censored early, the median is not reached
    med, ci = _km_median(np.array([10.0, 20.0, 30.0, 40.0]), np.array([True, False, False, False]))
    assert med is None and ci[1] is None
    med, ci = _km_median(np.arange(10.0, 110.0, 10.0), np.ones(10, dtype=bool))
    assert ci[0] <= med <= ci[1]
    assert wilson(0, 50)[0] == 0.0 and wilson(50, 50)[1] == 100.0  # exact ends, no rounding residue


def test_sle_trial_reports_b_cell_return_with_its_interval():
    res = run_trial(load_trial("mackensen-2022", n=40, follow_up_days=365))
    s = res.summary
    for key in ("b_cell_return", "b_cell_aplasia", "crs_onset", "crs_duration"):
        med, (lo, hi) = s[f"{key}_median_days"], s[f"{key}_median_ci95"]
        assert med is not None and (lo is None or lo <= med) and (hi is None or med <= hi), key
    assert s["kinetics"]["tmax_days"]["median_ci95"][0] <= s["kinetics"]["tmax_days"]["median"]


def test_the_documented_example_spec_is_valid(tmp_path):
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "trial-schema.md").read_text()
    f = tmp_path / "example.yaml"
    f.write_text(doc.split("```yaml\n")[1].split("```")[0])
    spec = load_trial(f, n=4, follow_up_days=20)
    res = run_trial(spec)
    assert res.patients.num_rows == 4 and res.summary["baseline"]["age_years"]["range"][1] <= 75


def test_subgroups_split_the_evaluated_patients():
    spec = load_trial("karmma", n=90, follow_up_days=30, subgroups=["tumour_burden", "extramedullary_disease"])
    res = run_trial(spec)
    n = res.summary["n_evaluated"]
    burden = res.summary["subgroups"]["tumour_burden"]
    assert len(burden) == 3 and sum(v["n"] for v in burden.values()) == n
    emd = res.summary["subgroups"]["extramedullary_disease"]
    assert set(emd) <= {"0", "1"} and sum(v["n"] for v in emd.values()) == n
    for row in burden.values():
        lo, hi = row["crs_any_ci95"]
        assert lo <= row["crs_any_pct"] <= hi


def test_cli_subgroups_option(tmp_path, capsys):
    assert main(["trial", "zuma-1", "--n", "6", "--out", str(tmp_path), "--json", "--subgroups", "age_group"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sum(v["n"] for v in out["subgroups"]["age_group"].values()) == out["n_evaluated"]
    assert main(["trial", "zuma-1", "--n", "6", "--out", str(tmp_path), "--subgroups", "shoe_size"]) == 2


def test_bridging_lowers_the_burden_at_infusion_of_bridged_responders_only():
    base = load_trial("cartitude-1", n=300, follow_up_days=30, bridging={"bridged_pct": 0})
    bridged = load_trial("cartitude-1", n=300, follow_up_days=30,
                         bridging={"bridged_pct": 60, "response_pct": 50, "response_burden_factor": 0.25})
    a, b = run_trial(base).patients, run_trial(bridged).patients
    col = lambda t, c: np.asarray(t.column(c).to_numpy(), dtype=float)  # noqa: E731
    for c in ("weight_kg", "tumour_burden", "age_years"):  # bridging draws change no other draw
        assert np.array_equal(col(a, c), col(b, c))
    assert np.array_equal(col(a, "tumour_burden_infusion"), col(a, "tumour_burden"))
    on, resp = col(b, "bridged") > 0, col(b, "bridging_response") > 0
    assert on.mean() == pytest.approx(0.6, abs=0.07) and resp.mean() == pytest.approx(0.3, abs=0.07)
    assert not (resp & ~on).any()  # a response only in bridged patients
    ratio = col(b, "tumour_burden_infusion") / col(b, "tumour_burden")
    assert np.allclose(ratio[resp], 0.25) and np.allclose(ratio[~resp], 1.0)
    res = run_trial(load_trial("cartitude-1", n=300, follow_up_days=30, subgroups=["bridging_response"],
                               bridging={"bridged_pct": 60, "response_pct": 50}))
    assert res.summary["baseline"]["bridged_pct"] == pytest.approx(100 * on.mean())
    # the response share is reported among the bridged, as trials report it and the spec sets it
    assert res.summary["baseline"]["bridging_response_pct"] == pytest.approx(100 * resp[on].mean())
    assert set(res.summary["subgroups"]["bridging_response"]) == {"0", "1"}
    # default burden factor of a response: the parameter table's
    t = run_trial(load_trial("cartitude-1", n=300, follow_up_days=30,
                             bridging={"bridged_pct": 60, "response_pct": 50})).patients
    factor = load_parameters().value("bridging.response_burden_factor")
    assert np.allclose((col(t, "tumour_burden_infusion") / col(t, "tumour_burden"))[resp], factor)


def test_a_covariate_drawn_among_another_must_name_a_bernoulli_covariate():
    from cartsim.population.sampling import Covariate, covariate_model, sample_population

    cov = {**covariate_model("mm"), "x": Covariate(distribution="bernoulli", p=0.5, among="weight_kg")}
    with pytest.raises(InputError, match="population.x.among"):
        sample_population("mm", 1, np.arange(5), covariates=cov)
    with pytest.raises(ValueError, match="only a bernoulli"):
        Covariate(distribution="normal", mean=1, sd=1, min=0, max=2, among="bridged")


def test_dose_levels_are_drawn_per_patient_and_change_no_other_draw():
    levels = {"levels": [{"flat": 4.5e8, "pct": 42.2}, {"flat": 3e8, "pct": 57.8}]}
    mixed = run_trial(load_trial("karmma", n=600, follow_up_days=20, dose=levels, subgroups=["dose_level"]))
    single = run_trial(load_trial("karmma", n=600, follow_up_days=20, dose={"flat": 3e8}))
    col = lambda t, c: np.asarray(t.column(c).to_numpy(), dtype=float)  # noqa: E731
    lvl, dose = col(mixed.patients, "dose_level"), col(mixed.patients, "dose_car_cells")
    assert set(np.unique(lvl)) == {1, 2} and np.mean(lvl == 1) == pytest.approx(0.422, abs=0.05)
    # each level's patients get that level's dose (CAR+ cells; ide-cel doses are CAR+ cells)
    assert np.allclose(dose[lvl == 1], dose[lvl == 1][0]) and np.allclose(dose[lvl == 2], dose[lvl == 2][0])
    assert dose[lvl == 1][0] / dose[lvl == 2][0] == pytest.approx(1.5)
    for c in ("weight_kg", "tumour_burden", "age_years"):  # the level has its own stream
        assert np.array_equal(col(mixed.patients, c), col(single.patients, c))
    base = mixed.summary["baseline"]["dose_level_pct"]
    assert base["1"] == pytest.approx(100 * np.mean(lvl == 1)) and sum(base.values()) == pytest.approx(100)
    assert set(mixed.summary["subgroups"]["dose_level"]) == {"1", "2"}
    # the same level's patients match a single-dose trial at that dose exactly
    same = lvl == 2
    assert np.array_equal(col(mixed.patients, "cmax_cells_per_ul")[same], col(single.patients, "cmax_cells_per_ul")[same])


def test_a_dask_cluster_gives_the_same_trial_and_resumable_chunks(tmp_path):
    distributed = pytest.importorskip("distributed")
    spec = load_trial("zuma-1", n=30, follow_up_days=40, chunk_size=7)
    here = run_trial(spec)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        there = run_trial(spec, tmp_path, client=client)
    assert there.patients.equals(here.patients)  # same patients, same chunk order, same numbers
    assert sorted(p.name for p in (tmp_path / "chunks").glob("chunk_*.parquet")) == [f"chunk_{k:05d}.parquet" for k in range(5)]
    again = run_trial(spec, tmp_path, resume=True)  # every chunk on disk: nothing recomputed
    assert again.patients.equals(here.patients)


def test_bad_dask_address_is_an_input_error(tmp_path, capsys):
    assert main(["trial", "zuma-1", "--n", "5", "--dask", "local:x", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--dask" in err and "local:N" in err and "\n" not in err
