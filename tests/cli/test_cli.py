"""The command line: JSON output, files written, one-line errors with exit code 2."""

import json

import pyarrow.parquet as pq
import pytest

from cartsim.cli import main

KEYS = ["cmax_cells_per_ul", "cmax_copies_per_ug", "tmax_days", "auc_0_28", "doubling_time_days",
        "contraction_half_life_days", "persistence_half_life_days", "response_day28", "response_day90",
        "crs_max_grade", "icans_max_grade", "b_cell_recovery_day"]


def test_simulate_json_and_files(tmp_path, capsys):
    rc = main(["simulate", "--indication", "b-all", "--product", "tisa-cel", "--days", "120",
               "--out", str(tmp_path), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for k in KEYS:
        assert k in out
    assert (tmp_path / "patient.png").stat().st_size > 10_000
    table = pq.read_table(tmp_path / "trajectories.parquet")
    assert table.num_rows == 121 and "car_t_copies_per_ug" in table.column_names


def test_dose_per_kg_and_flat(tmp_path, capsys):
    assert main(["simulate", "--indication", "lbcl", "--product", "axi-cel", "--dose", "1e6/kg",
                 "--weight", "80", "--days", "30", "--out", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dose_car_cells"] == pytest.approx(8e7)
    assert main(["simulate", "--indication", "lbcl", "--product", "axi-cel", "--dose", "5e7",
                 "--days", "30", "--out", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dose_car_cells"] == pytest.approx(5e7)


@pytest.mark.parametrize("args, field", [
    (["--indication", "cll"], "indication"),
    (["--product", "nope"], "product"),
    (["--dose", "-1"], "dose"),
    (["--dose", "0"], "dose"),
    (["--dose", "many"], "dose"),
    (["--dose", "2e6/m2"], "dose"),
    (["--days", "0"], "days"),
    (["--days", "ten"], "--days"),
    (["--tumour-burden", "150"], "tumour_burden"),
    (["--dosee", "1e8"], "--dosee"),
    (["--indication", "mm", "--product", "tisa-cel"], "product"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, field):
    rc = main(["simulate", *args, "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert field in err
    assert "\n" not in err and "Traceback" not in err


def test_bad_product_yaml(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text("name: x\ntarget_antigen: CD19\ncostim: CD28\n")
    rc = main(["simulate", "--product", str(f), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "dose" in err and "\n" not in err


def test_list(capsys):
    assert main(["list", "products"]) == 0
    assert "tisa-cel" in capsys.readouterr().out
    assert main(["list", "things"]) == 2
