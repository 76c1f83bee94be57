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
