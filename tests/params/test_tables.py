"""Every number the model uses has a unit, a source and an evidence level."""

import csv

import pytest

from cartsim.params import EVIDENCE_LEVELS, InputError, data_path, load_parameters
from cartsim.patient import INDICATIONS, list_policies, list_products, load_indication, load_policy, load_product


def test_parameter_table_has_provenance():
    table = load_parameters()
    assert len(table) > 40
    for p in table.values():
        assert p.unit and p.source and p.evidence in EVIDENCE_LEVELS, p.name


def test_replace_keeps_provenance_and_rejects_unknown():
    table = load_parameters()
    new = table.replace({"kill.gamma": 2.0}, source="test", evidence="assumption")
    assert new.value("kill.gamma") == 2.0 and new["kill.gamma"].source == "test"
    assert table.value("kill.gamma") == 1.15
    with pytest.raises(KeyError):
        table.replace({"no.such": 1.0})


@pytest.mark.parametrize("name", list_products())
def test_product_presets_load_with_sources(name):
    prod = load_product(name)
    for field in ("memory_fraction", "cd4_cd8_ratio", "viability_pct", "car_pos_pct", "vcn_per_car_cell"):
        v = getattr(prod, field)
        assert v.source and v.evidence in EVIDENCE_LEVELS


def test_required_presets_present():
    assert {"tisa-cel", "axi-cel", "liso-cel", "brexu-cel", "ide-cel", "cilta-cel", "cd19-sle"} <= set(list_products())


@pytest.mark.parametrize("name", INDICATIONS)
def test_indications_load(name):
    ind = load_indication(name)
    assert ind.default_product in list_products()
    assert load_product(ind.default_product).target_antigen in ind.target_antigens


@pytest.mark.parametrize("name", list_policies())
def test_policies_load(name):
    assert load_policy(name).name == name


def test_kinetic_targets_are_not_unverified_when_used_for_calibration():
    with open(data_path("kinetic_targets.csv"), newline="") as fh:
        for row in csv.DictReader(fh):
            if row["role"] == "calibration":
                assert row["evidence"] in {"verified", "secondary"}, row["id"]


def test_unknown_indication_is_input_error():
    with pytest.raises(InputError, match="indication"):
        load_indication("cll")


def test_input_error_cuts_a_long_value_to_one_readable_line():
    from cartsim.params.errors import MAX_VALUE_CHARS

    err = InputError("population.age_years", {f"k{i}": "x" * 20 for i in range(20)}, "a valid covariate")
    msg = str(err)
    assert "\n" not in msg and "..." in msg and len(msg) < MAX_VALUE_CHARS + 80
    assert str(InputError("n", 0, "a positive whole number")) == "n: got 0; expected a positive whole number"
