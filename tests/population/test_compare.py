"""Paired comparison of two virtual trials on the same virtual patients."""

import json

import numpy as np
import pytest

from cartsim.cli import main
from cartsim.population import load_trial
from cartsim.population.compare import COMPARED_ENDPOINTS, compare_trials, paired_difference


def _pairs(both, b_only, a_only, neither):
    a = np.r_[np.ones(both), np.zeros(b_only), np.ones(a_only), np.zeros(neither)].astype(bool)
    b = np.r_[np.ones(both), np.ones(b_only), np.zeros(a_only), np.zeros(neither)].astype(bool)
    return a, b


def test_paired_difference_is_newcombes_method_10():
    # 2x2 table both 10, B only 15, A only 5, neither 20 (n 50): the interval computed by
    # the formula of R's biostatUZH::confIntPairedProportion (Newcombe 1998, method 10)
    d, lo, hi = paired_difference(*_pairs(10, 15, 5, 20))
    assert d == pytest.approx(20.0)
    assert lo == pytest.approx(2.5838417, abs=1e-6) and hi == pytest.approx(35.6936572, abs=1e-6)
    d, lo, hi = paired_difference(*_pairs(0, 0, 0, 30))  # nothing happens in either arm
    assert d == 0 and lo <= 0 <= hi


def test_a_trial_compared_with_itself_differs_in_nothing():
    spec = load_trial("zuma-1", n=60, follow_up_days=60)
    r = compare_trials(spec, spec)
    assert r["n_paired"] == 60 and set(r["endpoints"]) == set(COMPARED_ENDPOINTS)
    for e in r["endpoints"].values():
        assert e["difference_pct"] == 0 and e["a_pct"] == e["b_pct"]
        assert e["difference_ci95"][0] <= 0 <= e["difference_ci95"][1]
    for m in ("cmax_cells_per_ul", "auc_0_28"):
        assert r["kinetics"][m]["geo_mean_ratio"] == 1.0 and r["kinetics"][m]["ci95"] == [1.0, 1.0]


def test_compare_command_shows_what_early_tocilizumab_changes(tmp_path, capsys):
    b = tmp_path / "early.yaml"
    b.write_text("name: zuma-1-early\nindication: lbcl\nproduct: axi-cel\ndose: {per_kg: 2.0e+6, cap: 2.0e+8}\n"
                 "policy: early\nn: 10\n")
    assert main(["compare", "zuma-1", str(b), "--n", "150", "--out", str(tmp_path / "o"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 150 and r["a"] == "zuma-1" and r["b"] == "zuma-1-early"
    toci = r["endpoints"]["tocilizumab"]
    assert toci["difference_pct"] > 0 and toci["difference_ci95"][0] > 0  # more patients given it, CI clear of 0
    assert (tmp_path / "o" / "comparison.json").exists() and (tmp_path / "o" / "b" / "patients.parquet").exists()


def test_compare_needs_the_same_indication(tmp_path, capsys):
    assert main(["compare", "zuma-1", "karmma", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "karmma.indication" in err and "\n" not in err


def test_dose_sweep_runs_the_same_patients_at_each_dose(tmp_path):
    from cartsim.population import dose_sweep

    spec = load_trial("karmma", n=40, follow_up_days=30)
    res = dose_sweep(spec, ["5e7", "4.5e8"], tmp_path)
    low, high = res["arms"]
    assert [a["dose"] for a in res["arms"]] == ["5e7", "4.5e8"] and "vs_first" not in low
    assert high["vs_first"]["n_paired"] == 40
    for e in ("orr", "crs_grade3plus"):
        lo, hi = high[f"{e}_ci95"]
        assert lo <= high[f"{e}_pct"] <= hi
    import pyarrow.parquet as pq

    a, b = (pq.read_table(tmp_path / f"dose-{k}" / "patients.parquet") for k in (1, 2))
    assert a.column("weight_kg").equals(b.column("weight_kg"))  # the same virtual patients
    ratio = np.asarray(b.column("dose_car_cells").to_numpy()) / np.asarray(a.column("dose_car_cells").to_numpy())
    assert np.allclose(ratio, 9.0)
    # more cells, more expansion in every paired patient on average
    assert high["vs_first"]["kinetics"]["cmax_cells_per_ul"]["geo_mean_ratio"] > 1


def test_sweep_command(tmp_path, capsys):
    assert main(["sweep", "zuma-1", "--dose", "1e6/kg,2e6/kg", "--n", "12", "--out", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [a["dose"] for a in out["arms"]] == ["1e6/kg", "2e6/kg"]
    assert (tmp_path / "sweep.json").exists() and (tmp_path / "dose-2" / "summary.json").exists()
    for bad in ("abc", "5e7,-1", ","):
        assert main(["sweep", "zuma-1", "--dose", bad, "--n", "5", "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert "dose" in err and "\n" not in err


def test_trial_command_writes_its_figure(tmp_path):
    assert main(["trial", "karmma", "--n", "8", "--out", str(tmp_path), "--json"]) == 0
    png = tmp_path / "trial.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
