"""``cartsim manufacture``: run many manufacturing batches and summarise them.

Registered in ``cartsim.cli`` with ``app.command("manufacture")(manufacture_command)``.
Bad input raises :class:`cartsim.params.InputError`; the main CLI turns it into one line
naming the field and exit code 2.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer

from cartsim.params import InputError


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def manufacture_command(
    platform: str = typer.Option("poc", "--platform",
                                 help="poc (closed machine in the hospital) or central (plant abroad)"),
    harvest_day: Optional[int] = typer.Option(None, "--harvest-day",
                                              help="culture day of harvest, 1-28 (default: the process's)"),
    n_batches: int = typer.Option(1000, "--n-batches", help="number of batches (patients) to simulate"),
    seed: int = typer.Option(0, "--seed", help="random seed (same seed, same batches)"),
    process: Optional[Path] = typer.Option(None, "--process", help="process YAML file (overrides --platform)"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
) -> None:
    """Manufacture CAR-T batches: duration, dose, phenotype, failures and OOS (point of care vs central)."""
    from cartsim.manufacturing.process import list_processes, load_process
    from cartsim.manufacturing.run import manufacture

    if process is None and platform not in list_processes():
        raise InputError("platform", platform, f"one of {', '.join(list_processes())} (or --process FILE)")
    if process is not None and process.suffix not in (".yaml", ".yml"):
        raise InputError("process", str(process), "a process .yaml file")
    proc = load_process(process if process is not None else platform)
    summary = _clean(manufacture(proc, n_batches, seed, harvest_day=harvest_day).summary())
    if as_json:
        print(json.dumps(summary))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{proc.display_name or proc.name}: {summary['n_batches']} batches, "
                        f"harvest day {summary['harvest_day']:g}, seed {seed}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in summary.items():
        if isinstance(v, dict):
            v = ", ".join(f"{r} {x:.2g}" for r, x in v.items() if x)
        elif isinstance(v, list):
            v = " - ".join(f"{x:.4g}" for x in v if x is not None)
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    Console().print(table)
