from pathlib import Path

from cartsim.report.paramdoc import render


def test_parameter_page_is_generated_from_the_current_tables():
    # docs/parameters.md must follow every change of parameters.csv (values, sources,
    # evidence): regenerate it with `python -m cartsim.report.paramdoc`.
    page = Path(__file__).resolve().parents[2] / "docs" / "parameters.md"
    assert page.read_text() == render()
