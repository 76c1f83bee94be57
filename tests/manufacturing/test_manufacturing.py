"""The manufacturing twin: calendar, failure/OOS calibration, harvest day, determinism,
vectorisation, input errors, CLI and the hand-over to the in-vivo model."""

import json
import time

import numpy as np
import pytest
import typer
from pydantic import BaseModel

import cartsim.cli as cli
from cartsim.manufacturing import (
    FAILURE_REASONS,
    OOS_REASONS,
    BatchResults,
    ProcessSpec,
    daily_culture,
    dose_cells,
    list_processes,
    load_process,
    manufacture,
    manufacturing_parameters,
    manufacturing_targets,
    typical_batch,
    vcn_distribution,
)
from cartsim.manufacturing.cli import manufacture_command
from cartsim.params import EVIDENCE_LEVELS, InputError, Sourced, data_path
from cartsim.patient import Product, simulate

N = 20_000          # batches for rate checks (about 0.1 s each)
SEED = 7
TG = manufacturing_targets()


@pytest.fixture(scope="module")
def runs():
    return {plat: manufacture(plat, N, SEED) for plat in ("poc", "central")}


# --- data -------------------------------------------------------------------------------

def _sourced(obj, path="process"):
    """Every Sourced number inside a pydantic model, with its path."""
    if isinstance(obj, Sourced):
        yield path, obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _sourced(getattr(obj, name), f"{path}.{name}")
    elif isinstance(obj, list):
        for i, x in enumerate(obj):
            yield from _sourced(x, f"{path}.{i}")


def test_parameter_tables_have_provenance():
    for table in (manufacturing_parameters(), manufacturing_targets()):
        assert len(table) > 30
        for p in table.values():
            assert p.unit and p.source and p.evidence in EVIDENCE_LEVELS, p.name
    # calibrated rows say what they were fitted to
    for p in manufacturing_parameters().values():
        if p.evidence == "calibrated":
            assert "cartsim.manufacturing.calibrate" in p.source, p.name


@pytest.mark.parametrize("name", ["poc", "central"])
def test_process_presets_every_number_sourced(name):
    proc = load_process(name)
    assert set(list_processes()) >= {"poc", "central"}
    found = list(_sourced(proc))
    assert len(found) > 30
    for where, v in found:
        assert v.source and v.source != "user input" and v.evidence in EVIDENCE_LEVELS, where
        assert v.unit, where


def test_dose_cells_matches_dosespec():
    d = load_process("poc").dose_target
    from cartsim.patient import load_product

    tisa = load_product("tisa-cel").dose
    for dose in (d, tisa):
        w = np.array([20.0, 39.0, 50.0, 51.0, 90.0])
        assert np.allclose(dose_cells(dose, w), [dose.cells(x) for x in w])


# --- calendar and rates -----------------------------------------------------------------

def test_durations_within_done_when(runs):
    poc = runs["poc"].summary()["duration_days_median"]
    central = runs["central"].summary()["duration_days_median"]
    assert TG.value("poc.apheresis_to_release_low") <= poc <= TG.value("poc.apheresis_to_release_high")
    assert TG.value("central.apheresis_to_release_low") <= central <= TG.value("central.apheresis_to_release_high")
    # central is calibrated to the EU axi-cel median (25 d); the test also holds for 2000 batches
    assert abs(central - TG.value("central.apheresis_to_release_median")) < 1.0
    small = manufacture("central", 2000, 1).summary()["duration_days_median"]
    assert 17 <= small <= 30
    assert runs["central"].summary()["delivery_days_median"] > central


def test_failure_and_oos_within_published_ranges(runs):
    lo, hi = TG.value("failure.range_low"), TG.value("failure.range_high")
    oos_lo, oos_hi = TG.value("oos.liso_cel_transcend"), TG.value("oos.cilta_cel_real_world")
    c = runs["central"].summary()
    p = runs["poc"].summary()
    assert lo <= c["failure_pct"] <= hi
    assert abs(c["failure_pct"] - TG.value("failure.target")) < 0.6          # calibrated
    assert oos_lo <= c["oos_pct"] <= oos_hi
    assert lo <= p["failure_pct"] <= hi
    # a fresh product loses no viability on thawing: fewer OOS products, never more than published
    assert p["oos_pct"] < c["oos_pct"] and p["oos_pct"] <= oos_hi
    assert c["oos_reasons_pct"]["viability"] > 10 * p["oos_reasons_pct"]["viability"]
    # calibrated split of OOS reasons (cilta-cel shares x 12%)
    for reason, key in (("low_dose", "oos.share_low_dose"), ("viability", "oos.share_viability"),
                        ("potency", "oos.share_potency")):
        assert abs(c["oos_reasons_pct"][reason] - TG.value(key) / 100 * TG.value("oos.target")) < 0.8, reason
    # re-manufacturing rescues most failed batches
    assert c["final_failure_pct"] < c["failure_pct"] / 2
    assert set(c["failure_reasons_pct"]) == set(FAILURE_REASONS)
    assert set(c["oos_reasons_pct"]) == set(OOS_REASONS)


def test_expansion_transduction_and_vcn_match_published(runs):
    # calibration: typical batch expands 30-fold in 13 days (Zhu 2018)
    fold13 = typical_batch("poc", 13).attributes["fold_expansion"][0]
    assert fold13 == pytest.approx(TG.value("fold.zhu2018_13d"), rel=0.01)
    s = runs["poc"].summary()
    assert TG.value("car_pos.ari0001_low") <= s["car_pos_pct_median"] <= TG.value("car_pos.ari0001_high")
    assert TG.value("vcn.ari0001_low") <= s["vcn_per_cell_median"] <= TG.value("vcn.ari0001_high")
    assert 90 <= s["viability_pct_median"] <= 99


# --- harvest day ------------------------------------------------------------------------

def test_harvest_day_changes_phenotype_monotonically():
    days = range(7, 15)
    typ = [typical_batch("poc", d).attributes for d in days]
    mem = [a["memory_fraction"][0] for a in typ]
    cells = [a["harvest_viable_cells"][0] for a in typ]
    ratio = [a["cd4_cd8_ratio"][0] for a in typ]
    assert all(np.diff(mem) < 0) and all(np.diff(cells) > 0) and all(np.diff(ratio) < 0)
    pop = [manufacture("poc", 5000, 3, harvest_day=d).summary() for d in (7, 10, 12)]
    assert pop[0]["memory_fraction_median"] > pop[1]["memory_fraction_median"] > pop[2]["memory_fraction_median"]
    assert pop[0]["fold_expansion_median"] < pop[1]["fold_expansion_median"] < pop[2]["fold_expansion_median"]
    assert pop[0]["duration_days_median"] < pop[2]["duration_days_median"]
    # a short culture gives fewer cells: more products below the dose specification
    assert pop[0]["oos_reasons_pct"]["low_dose"] > pop[2]["oos_reasons_pct"]["low_dose"]


def test_daily_culture_trajectory_matches_run():
    n = 50
    d = daily_culture("central", 12, n_batches=n, seed=4)
    r = manufacture("central", n, 4, harvest_day=12)
    assert d["viable_cells"].shape == (13, n) and d["day"][-1] == 12
    first = ~r.first_attempt_failed
    assert np.allclose(d["viable_cells"][-1][first], r.attributes["harvest_viable_cells"][first])
    assert np.allclose(d["memory_fraction"][-1][first], r.attributes["memory_fraction"][first])
    assert np.all(np.diff(d["memory_fraction"], axis=0) < 0)
    assert np.allclose(d["memory_fraction"] + d["effector_fraction"], 1.0)
    assert np.all(d["car_pos_pct"][0] == 0) and np.all(d["car_pos_pct"][1:] > 0)
    # lag, then growth
    typ = daily_culture("poc", 12, typical=True)
    assert typ["viable_cells"][1, 0] < typ["viable_cells"][0, 0] < typ["viable_cells"][-1, 0]


# --- patient, process choices -----------------------------------------------------------

def test_starting_material_and_process_choices():
    base = dict(n_batches=1, typical=True)
    fit = manufacture("poc", patients={"prior_lines": 1}, **base).attributes
    heavy = manufacture("poc", patients={"prior_lines": 8}, **base).attributes
    assert heavy["fold_expansion"][0] < fit["fold_expansion"][0]
    assert heavy["memory_fraction"][0] < fit["memory_fraction"][0]
    benda = manufacture("poc", patients={"bendamustine": True}, **base).attributes
    assert benda["fitness"][0] < 1.0
    low = manufacture("poc", patients={"alc_per_ul": 20}, **base).attributes
    assert low["seeded_cells"][0] < load_process("poc").culture.seed_cells.value
    ref = manufacture("poc", **base).attributes
    il = manufacture("poc", cytokines="il7_il15", **base).attributes
    assert il["memory_fraction"][0] > ref["memory_fraction"][0]
    cryo = manufacture("poc", product_form="cryopreserved", **base).attributes
    assert cryo["viability_pct"][0] < ref["viability_pct"][0]
    assert cryo["dose_available"][0] < ref["dose_available"][0]
    hi_moi = load_process("poc").with_(culture={"moi": {"value": 10, "unit": "TU/cell", "source": "test",
                                                          "evidence": "assumption"}})
    moi10 = manufacture(hi_moi, **base).attributes
    moi5 = manufacture("poc", **base).attributes
    assert moi10["car_pos_pct"][0] > moi5["car_pos_pct"][0] and moi10["vcn_per_cell"][0] > moi5["vcn_per_cell"][0]


def test_vcn_distribution():
    pmf = vcn_distribution(np.array([0.5, 2.0, 6.0]), 30)
    assert pmf.shape == (3, 30) and np.allclose(pmf.sum(-1), 1.0)
    k = np.arange(1, 31)
    assert np.all(np.diff((pmf * k).sum(-1)) > 0)       # more vector, more copies per CAR+ cell


def test_exception_rules_and_remanufacture():
    strict = load_process("central").with_(exceptions={"allow_oos_infusion": False})
    r = manufacture(strict, 5000, 2).summary()
    assert r["oos_pct"] == 0 and r["failure_reasons_pct"]["oos_not_allowed"] > 5
    assert r["failure_pct"] > manufacture("central", 5000, 2).summary()["failure_pct"]
    once = load_process("central").with_(remanufacture={"enabled": False})
    r1 = manufacture(once, 5000, 2)
    assert np.all(r1.n_attempts == 1) and r1.summary()["final_failure_pct"] == r1.summary()["failure_pct"]
    r2 = manufacture("central", 5000, 2)
    again = r2.released & (r2.n_attempts == 2)
    assert again.any() and np.all(r2.release_day[again] > np.nanmedian(r2.first_release_day) + 3)


# --- determinism and speed --------------------------------------------------------------

def test_same_seed_same_batches():
    a, b = manufacture("central", 3000, 11), manufacture("central", 3000, 11)
    c = manufacture("central", 3000, 12)
    for k in a.attributes:
        assert np.array_equal(a.attributes[k], b.attributes[k]), k
    assert np.array_equal(a.release_day, b.release_day, equal_nan=True)
    assert not np.array_equal(a.attributes["fold_expansion"], c.attributes["fold_expansion"])
    assert json.dumps(a.summary()) == json.dumps(b.summary())
    # common random numbers: the harvest day changes the culture, not the patients
    d12 = manufacture("central", 3000, 11, harvest_day=12)
    assert np.array_equal(a.patients.alc_per_ul, d12.patients.alc_per_ul)


def test_vectorised_10000_batches_fast():
    manufacture("poc", 100, 0)
    t = time.perf_counter()
    r = manufacture("central", 10_000, 1)
    assert time.perf_counter() - t < 0.5
    assert isinstance(r, BatchResults) and len(r) == 10_000 and r.release_day.shape == (10_000,)


# --- bad input --------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    ({"harvest_day": 0}, "harvest_day"), ({"harvest_day": 29}, "harvest_day"),
    ({"harvest_day": "ten"}, "harvest_day"), ({"harvest_day": float("nan")}, "harvest_day"),
    ({"n_batches": 0}, "n_batches"), ({"n_batches": -3}, "n_batches"), ({"n_batches": 2.5}, "n_batches"),
    ({"seed": -1}, "seed"), ({"process": "moon"}, "platform"), ({"indication": "cll"}, "indication"),
    ({"patients": {"alc_per_ul": -1}}, "patients.alc_per_ul"), ({"patients": {"cd3_pct": 150}}, "patients.cd3_pct"),
    ({"patients": {"age": 3}}, "patients.age"), ({"cytokines": "il21"}, "cytokines"),
])
def test_bad_input_raises_input_error(kwargs, field):
    args = {"process": "poc", "n_batches": 10, "seed": 0, **kwargs}
    with pytest.raises(InputError) as e:
        manufacture(args.pop("process"), args.pop("n_batches"), args.pop("seed"), **args)
    assert field in str(e.value) and "\n" not in str(e.value)


def _write(tmp_path, text, name="p.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return f


def test_malformed_process_files(tmp_path):
    good = data_path("manufacturing", "poc.yaml").read_text()
    cases = {
        "bad.yaml": ("a: [1,\n", "process"),
        "list.yaml": ("- 1\n- 2\n", "process"),
        "missing.yaml": ("name: x\nplatform: poc\n", "base_product"),
        "extra.yaml": (good.replace("platform: poc", "platform: poc\ncolour: blue"), "colour"),
        "moi.yaml": (good.replace("moi: {value: 5,", "moi: {value: -5,"), "culture.moi"),
        "harvest.yaml": (good.replace("harvest_day: {value: 8,", "harvest_day: {value: 40,"), "culture.harvest_day"),
        "tests.yaml": (good.replace("- name: potency", "- name: potence"), "release_tests"),
        "evidence.yaml": (good.replace("moi: {value: 5, unit: transducing units per cell, source: \"Zhu F, et al. "
                                       "Cytotherapy 2018 (MOI 5-10), shared/reference/manufacturing.csv; lower end\", "
                                       "evidence: verified}", "moi: {value: 5, evidence: rumour}"), "culture.moi"),
    }
    for name, (text, field) in cases.items():
        with pytest.raises(InputError) as e:
            load_process(_write(tmp_path, text, name))
        assert field in str(e.value) and "\n" not in str(e.value), name
    with pytest.raises(InputError, match="process"):
        load_process(tmp_path / "nope.yaml")
    # a valid user file loads and runs
    proc = load_process(_write(tmp_path, good.replace("name: poc", "name: mine"), "mine.yaml"))
    assert isinstance(proc, ProcessSpec) and proc.name == "mine"
    assert manufacture(proc, 10, 0).summary()["process"] == "mine"


# --- command line -----------------------------------------------------------------------

@pytest.fixture()
def run_cli(monkeypatch):
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("manufacture")(manufacture_command)
    app.command("noop")(lambda: None)   # two commands: the sub-command name is required, as in cartsim
    monkeypatch.setattr(cli, "app", app)
    return lambda *args: cli.main(["manufacture", *args])


def test_cli_json(run_cli, capsys):
    assert run_cli("--platform", "central", "--harvest-day", "10", "--n-batches", "500", "--seed", "3",
                   "--json") == 0
    out = json.loads(capsys.readouterr().out)
    for k in ("duration_days_median", "dose_achieved_median", "car_pos_pct_median", "memory_fraction_median",
              "failure_pct", "oos_pct"):
        assert isinstance(out[k], float), k
    assert out["platform"] == "central" and out["harvest_day"] == 10 and out["n_batches"] == 500
    assert run_cli("--n-batches", "200") == 0 and "duration_days_median" in capsys.readouterr().out


@pytest.mark.parametrize("args, field", [
    (["--harvest-day", "0"], "harvest_day"), (["--harvest-day", "29"], "harvest_day"),
    (["--harvest-day", "ten"], "--harvest-day"), (["--platform", "moon"], "platform"),
    (["--n-batches", "0"], "n_batches"), (["--n-batches", "-2"], "n_batches"), (["--seed", "-1"], "seed"),
    (["--process", "/no/such/file.yaml"], "process"),
])
def test_cli_bad_input_one_line_exit_2(run_cli, capsys, args, field):
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert field in err and "\n" not in err and "Traceback" not in err


def test_cli_malformed_process_file(run_cli, capsys, tmp_path):
    text = data_path("manufacturing", "poc.yaml").read_text().replace("moi: {value: 5,", "moi: {value: 0,")
    f = _write(tmp_path, text)
    assert run_cli("--process", str(f), "--json") == 2
    err = capsys.readouterr().err.strip()
    assert "culture.moi" in err and "\n" not in err


# --- hand-over to the in-vivo model ---------------------------------------------------

def test_product_handover_and_harvest_day_changes_kinetics():
    d7 = typical_batch("poc", 7, indication="b-all")
    d12 = typical_batch("poc", 12, indication="b-all")
    p7, p12 = d7.product(0), d12.product(0)
    assert isinstance(p7, Product) and p7.target_antigen == "CD19" and p7.dose.flat is not None
    assert p7.memory_fraction.value > p12.memory_fraction.value
    assert p7.dose.flat.value == pytest.approx(d7.dose_achieved[0])
    r7 = simulate("b-all", p7, days=120)
    r12 = simulate("b-all", p12, days=120)
    assert r7.ok and r12.ok
    assert r7.metrics["dose_car_cells"] == pytest.approx(p7.dose.flat.value)
    c7, c12 = r7.metrics["cmax_cells_per_ul"], r12.metrics["cmax_cells_per_ul"]
    assert abs(c7 - c12) / c12 > 0.01
    level7, level12 = r7.daily["car_t_cells_per_ul"][90], r12.daily["car_t_cells_per_ul"][90]
    assert abs(level7 - level12) / level12 > 0.01


def test_failed_batch_has_no_product():
    r = manufacture(load_process("central").with_(remanufacture={"enabled": False}), 2000, 5)
    i = int(np.flatnonzero(~r.released)[0])
    assert np.isnan(r.dose_achieved[i]) and np.isnan(r.release_day[i])
    with pytest.raises(InputError, match="batch"):
        r.product(i)
    j = int(np.flatnonzero(r.released)[0])
    assert r.product(j).dose.flat.value == pytest.approx(r.dose_achieved[j])
    with pytest.raises(InputError, match="batch"):
        r.product(len(r))
