"""Products: attributes alone, presets on the same schema, clear errors for bad files."""

import pytest

from cartsim.params import InputError
from cartsim.patient import load_product
from cartsim.patient.product import Product

MINIMAL = """
name: my-car
target_antigen: CD19
costim: 4-1BB
dose: {per_kg: 1.0e6}
memory_fraction: 0.4
cd4_cd8_ratio: 1
viability_pct: 90
car_pos_pct: 40
vcn_per_car_cell: 1.5
"""


def test_product_from_attributes_alone(tmp_path):
    f = tmp_path / "my.yaml"
    f.write_text(MINIMAL)
    p = load_product(f)
    assert p.costim == "4-1BB" and p.memory_fraction.value == 0.4
    assert p.memory_fraction.evidence == "assumption"  # bare numbers are recorded as user input
    assert p.dose.cells(70) == pytest.approx(7e7)


def test_label_dose_rules():
    tisa = load_product("tisa-cel")
    assert tisa.dose.cells(30) == pytest.approx(30 * 3.1e6)  # per kg up to 50 kg
    assert tisa.dose.cells(80) == pytest.approx(1.0e8)       # flat above
    axi = load_product("axi-cel")
    assert axi.dose.cells(150) == pytest.approx(2.0e8)       # capped


@pytest.mark.parametrize("text, field", [
    (MINIMAL.replace("costim: 4-1BB", "costim: OX40"), "costim"),
    (MINIMAL.replace("memory_fraction: 0.4", "memory_fraction: 1.4"), "memory_fraction"),
    (MINIMAL.replace("memory_fraction: 0.4\n", ""), "memory_fraction"),
    (MINIMAL.replace("car_pos_pct: 40", "car_pos_pct: lots"), "car_pos_pct"),
    (MINIMAL + "colour: blue\n", "colour"),
    ("name: [unclosed", "product"),
    ("- just\n- a list\n", "product"),
])
def test_bad_product_files_name_the_field(tmp_path, text, field):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(InputError) as err:
        load_product(f)
    assert field in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_and_unknown_preset():
    with pytest.raises(InputError, match="product"):
        load_product("no-such-product")
    with pytest.raises(InputError, match="product"):
        load_product("/nonexistent/p.yaml")


def test_with_changes_attributes():
    p = load_product("tisa-cel").with_(memory_fraction=0.5)
    assert isinstance(p, Product) and p.memory_fraction.value == 0.5
