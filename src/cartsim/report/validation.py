"""Side-by-side comparison of the typical simulated patient with published kinetics.

The reference values, tolerances and their sources live in
``params/data/kinetic_targets.csv``; ``role`` says whether a row was a calibration
target, a check of a parameter taken from the same source, or a true prediction.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from cartsim.params import ParameterTable, data_path
from cartsim.patient.build import PatientSpec
from cartsim.patient.simulate import SimulationResult, simulate_many

DAYS = 365


@dataclass(frozen=True)
class KineticCheck:
    id: str
    indication: str
    product: str
    metric: str
    reference: float | str
    low: float
    high: float
    unit: str
    role: str
    source: str
    evidence: str
    simulated: float | None

    @property
    def ok(self) -> bool:
        return self.simulated is not None and self.low <= self.simulated <= self.high


TARGET_FILES = {"kinetics": "kinetic_targets.csv", "toxicity": "toxicity_targets.csv"}


def load_targets(kind: str = "kinetics") -> list[dict]:
    with open(data_path(TARGET_FILES[kind]), newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def metric_value(result: SimulationResult, metric: str) -> float | None:
    if metric.startswith("cells_per_ul_day"):
        day = int(metric.removeprefix("cells_per_ul_day"))
        return float(result.daily["car_t_cells_per_ul"][day])
    v = result.metrics.get(metric)
    return None if v is None else float(v)


def kinetic_checks(params: ParameterTable | None = None, kind: str = "kinetics") -> list[KineticCheck]:
    """Simulate each referenced (indication, product) typical patient once; compare.

    ``kind`` selects the target table: ``kinetics`` or ``toxicity``.
    """
    targets = load_targets(kind)
    cases = sorted({(t["indication"], t["product"]) for t in targets})
    results = dict(zip(cases, simulate_many([(i, p, PatientSpec()) for i, p in cases],
                                            days=DAYS, params=params)))
    return [
        KineticCheck(t["id"], t["indication"], t["product"], t["metric"], _number(t["reference"]),
                     float(t["tolerance_low"]), float(t["tolerance_high"]), t["unit"], t["role"],
                     t["source"], t["evidence"],
                     metric_value(results[(t["indication"], t["product"])], t["metric"]))
        for t in targets
    ]


def _fmt(x: float | str | None) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3e}"


def render_table(checks: list[KineticCheck]) -> list[list[str]]:
    header = ["check", "indication", "product", "metric", "reference", "simulated",
              "tolerance", "unit", "role", "within"]
    rows = [header]
    for c in checks:
        rows.append([c.id, c.indication, c.product, c.metric, _fmt(c.reference), _fmt(c.simulated),
                     f"{_fmt(c.low)}-{_fmt(c.high)}", c.unit, c.role, "yes" if c.ok else "NO"])
    return rows


def render_markdown(checks: list[KineticCheck]) -> str:
    rows = render_table(checks)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    lines.append("")
    lines.append("Sources:")
    lines.append("")
    for c in checks:
        lines.append(f"- `{c.id}`: {c.source} (evidence: {c.evidence})")
    return "\n".join(lines)
