"""The ``cartsim`` command line.

Bad input never ends in a traceback: it prints one line naming the field, the value and
what was expected, and exits with code 2.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Optional

import typer

from cartsim.params import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="cartsim: a digital twin of CAR-T cell therapy.")
validate_app = typer.Typer(no_args_is_help=True, help="Compare the model with published figures.")
app.add_typer(validate_app, name="validate")


def _register_stages() -> None:
    from cartsim.manufacturing.cli import manufacture_command

    app.command("manufacture", help="Simulate manufacturing batches: point of care vs central plant.")(
        manufacture_command)


_register_stages()

EXIT_BAD_INPUT = 2


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@app.command()
def simulate(
    indication: str = typer.Option("b-all", help="b-all, lbcl, mm or sle"),
    product: Optional[str] = typer.Option(None, help="preset name or product YAML path (default: the indication's)"),
    dose: Optional[str] = typer.Option(None, help="CAR+ cells, flat (1e8) or per kg (2e6/kg); default: label dose"),
    tumour_burden: Optional[float] = typer.Option(None, "--tumour-burden", help="in the indication's unit (see docs)"),
    weight: Optional[float] = typer.Option(None, "--weight", help="body weight, kg"),
    days: int = typer.Option(365, help="follow-up, days"),
    seed: Optional[int] = typer.Option(None, help="draw one virtual patient (omit for the typical patient)"),
    policy: str = typer.Option("default", help="management policy name or YAML path"),
    no_lymphodepletion: bool = typer.Option(False, "--no-lymphodepletion", help="skip Flu/Cy"),
    out: Path = typer.Option(Path("cartsim-out"), help="output folder (Parquet, PNG, JSON)"),
    as_json: bool = typer.Option(False, "--json", help="print the metrics as one JSON object"),
) -> None:
    """Simulate one patient from infusion: kinetics, response, CRS/ICANS, B cells."""
    from cartsim.patient import NO_LYMPHODEPLETION
    from cartsim.patient import simulate as run

    if days <= 0:
        raise InputError("days", days, "a positive whole number of days")
    result = run(indication, product, dose=dose, tumour_burden=tumour_burden, weight_kg=weight,
                 days=days, seed=seed, policy=policy,
                 lymphodepletion=NO_LYMPHODEPLETION if no_lymphodepletion else None)
    metrics = {k: _clean(v) for k, v in result.metrics.items()}
    metrics.update(indication=result.indication.name, product=result.product.name, seed=seed, days=days)
    out.mkdir(parents=True, exist_ok=True)
    import pyarrow.parquet as pq

    from cartsim.report.figures import patient_figure

    pq.write_table(result.to_table(), out / "trajectories.parquet")
    patient_figure(result, out / "patient.png")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if as_json:
        print(json.dumps(metrics))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.product.name} in {result.indication.name} (typical patient)" if seed is None
                  else f"{result.product.name} in {result.indication.name} (virtual patient, seed {seed})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console = Console()
    console.print(table)
    console.print(f"wrote {out/'trajectories.parquet'}, {out/'patient.png'}, {out/'metrics.json'}")


def _validate(kinds: list[str], markdown: Optional[Path], n_trial: int = 400) -> None:
    from rich.console import Console
    from rich.table import Table

    from cartsim.report.validation import kinetic_checks, render_markdown, render_table

    sections, n_bad_all = [], 0
    for kind in kinds:
        if kind == "trials":
            from cartsim.report.validation import trial_comparisons

            comps = trial_comparisons(n_trial)
            rows = render_table(comps)
            title = f"cartsim virtual trials vs published ({n_trial} virtual patients per trial)"
            n_bad = sum(c.role == "calibration" and c.within is False for c in comps)
            n_all = sum(c.role == "calibration" for c in comps)
            md = render_markdown(comps)
        else:
            checks = kinetic_checks(kind=kind)
            rows = render_table(checks)
            title = f"cartsim {kind} validation (typical patients)"
            n_bad = sum(not c.ok for c in checks)
            n_all = len(checks)
            md = render_markdown(checks)
        table = Table(title=title)
        for h in rows[0]:
            table.add_column(h)
        for r in rows[1:]:
            table.add_row(*r, style="bold red" if r[-1] == "NO" else None)
        Console(width=200).print(table)
        n_bad_all += n_bad
        what = "calibration targets" if kind == "trials" else "rows"
        print(f"{kind}: {n_all - n_bad} of {n_all} {what} within tolerance")
        sections.append(_validation_doc(kind, md, n_bad, n_all, n_trial))
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        cmd = "cartsim validate " + (kinds[0] if len(kinds) == 1 else "all") + f" --markdown {markdown}"
        markdown.write_text(
            "# Validation: simulated patients and virtual trials against published figures\n\n"
            f"Generated by `{cmd}`; do not edit by hand. Calibration, in this order: "
            "`python scripts/calibrate_kinetics.py --write`, `python scripts/calibrate_toxicity.py --write` "
            "(typical patient), then `cartsim calibrate --write` (between-patient variances, the "
            "antigen-negative shares that set durability and the steepness of the ICE score's fall, "
            "which also moves the typical patient's ICANS grade: the last two steps were alternated "
            "until the typical-patient fit had nothing left to move).\n\n"
            + "\n".join(sections))
    raise typer.Exit(1 if n_bad_all else 0)


@validate_app.command("kinetics")
def validate_kinetics(
    markdown: Optional[Path] = typer.Option(None, help="also write the table as Markdown to this file"),
) -> None:
    """Typical simulated patients vs published kinetics; exit 1 if any is out of tolerance."""
    _validate(["kinetics"], markdown)


@validate_app.command("toxicity")
def validate_toxicity(
    markdown: Optional[Path] = typer.Option(None, help="also write the table as Markdown to this file"),
) -> None:
    """Typical-patient CRS/ICANS grades vs trial incidences; exit 1 if any is out of range."""
    _validate(["toxicity"], markdown)


@validate_app.command("trials")
def validate_trials(
    n: int = typer.Option(400, min=1, help="virtual patients per trial"),
    markdown: Optional[Path] = typer.Option(None, help="also write the table as Markdown to this file"),
) -> None:
    """Virtual trials (presets) vs published endpoints, with 95% CIs; exit 1 if a target is outside."""
    _validate(["trials"], markdown, n)


@validate_app.command("all")
def validate_all(
    n: int = typer.Option(400, min=1, help="virtual patients per trial"),
    markdown: Optional[Path] = typer.Option(None, help="also write the tables as Markdown to this file"),
) -> None:
    """Kinetics, toxicity and virtual trials together (this writes docs/validation.md)."""
    _validate(["kinetics", "toxicity", "trials"], markdown, n)


def _validation_doc(kind: str, table_md: str, n_bad: int, n: int, n_trial: int = 400) -> str:
    intro = {
        "kinetics": "Each row simulates the typical patient of an indication with a product's label dose "
                    "and compares one kinetic metric with its published value.",
        "toxicity": "Each row compares the typical patient's maximum ASTCT grade (or CRS onset day) with "
                    "the range implied by a trial's incidence: e.g. CRS in 84% and grade >= 3 in 5% of "
                    "patients puts the median patient at grade 1-2. Trials used different CRS scales "
                    "(Penn, Lee 2014, ASTCT); Penn grades run higher than ASTCT, which the ranges allow for.",
        "trials": f"Each trial preset is simulated with {n_trial} virtual patients (seed 20261122) from its "
                  "product, indication, dose rule and population alone, and its endpoints are set beside the "
                  "published ones. *published 95% CI*: Wilson interval of the published percentage with the "
                  "trial's own n; *within*: the simulated value lies inside it. *simulated 95% CI*: Wilson "
                  "interval of the simulated percentage (Kaplan-Meier CI for the median PFS). Targets are "
                  "only `verified` or `secondary` values; unverified values are shown as *check*. CRS scales: "
                  "any-grade CRS is fever-defined in every scale (Lee 2014, Penn, ASTCT) and is compared "
                  "directly; grade >= 3 is compared for ASTCT and Lee 2014 (vasopressors or high-flow oxygen "
                  "in both) but not for the Penn scale, which grades higher. Neurotoxicity recorded as "
                  "neurological events (ELIANA, JULIET, ZUMA-1) or as all CAR-T neurotoxicity (CARTITUDE-1: "
                  "parkinsonism and cranial nerve palsies too) counts events ICANS does not, so it is not "
                  "fitted. Durability: EFS counts no response by day 90 as an event; ZUMA-1 is followed to "
                  "15.4 months for its ongoing-response rate. The fit sets between-patient variances and the "
                  "median antigen-negative share in B-ALL, lymphoma and myeloma (in myeloma: disease escaping CAR-T "
                  "killing, which sets the depth of response) and the steepness of the ICE score's fall "
                  "(the share of ICANS that is severe). A row named `<preset>@<dose>` is the preset run at "
                  "that dose (the dose levels of ide-cel's phase 1, CRB-401: a check of the dose-response). "
                  "Rows without a CI (Cmax spread, "
                  "responder/non-responder Cmax ratio, median PFS) are shown, not judged. JULIET is held "
                  "out of the fit (*prediction*). Fit: `cartsim calibrate --write` "
                  "(src/cartsim/population/calibrate.py).",
    }[kind]
    return (
        f"## {'Virtual trials' if kind == 'trials' else kind.capitalize()}\n\n"
        f"{intro} `role`: *calibration* rows were fitted (scripts/calibrate_*.py); *check* rows were "
        "not fitted but their sources informed parameters; *prediction* rows were never used in any fit.\n\n"
        f"{n - n_bad} of {n} {'calibration targets' if kind == 'trials' else 'rows'} within tolerance.\n\n"
        + table_md + "\n"
    )


@app.command()
def calibrate(
    n: int = typer.Option(400, min=10, help="virtual patients per trial in each evaluation (400: the stored fit)"),
    max_evals: int = typer.Option(80, "--max-evals", min=1, help="Nelder-Mead evaluations (80: the stored fit)"),
    seed: int = typer.Option(20261122, help="seed of the common random numbers"),
    write: bool = typer.Option(False, help="store the fitted values (variability.csv, parameters.csv) and regenerate the docs"),
    docs: Path = typer.Option(Path("docs/validation.md"), help="validation page regenerated with --write"),
) -> None:
    """Fit between-patient variances and typical values by indication to the published trial
    endpoints (population_targets.csv)."""
    from cartsim.population.calibrate import fit, write_typical, write_variability

    omega2, typical = fit(n=n, max_evals=max_evals, seed=seed)
    print("fitted omega^2: " + ", ".join(f"{k}={v:.4g}" for k, v in omega2.items()))
    print("fitted typical values: " + ", ".join(f"{k}={v:.4g}" for k, v in typical.items()))
    if write:
        write_variability(omega2, n, seed)
        write_typical(typical, n, seed)
        from cartsim.report.paramdoc import main as paramdoc

        paramdoc([str(docs.parent / "parameters.md")])
        print("wrote variability.csv and parameters.csv; regenerating " + str(docs))
        try:
            _validate(["kinetics", "toxicity", "trials"], docs)
        except typer.Exit:
            pass


def _fmt(x) -> str:
    """A table cell: floats to 3 significant digits, None as n/a."""
    return "n/a" if x is None else (f"{x:.3g}" if isinstance(x, float) else str(x))


def _with_ci(value, lo, hi, sep: str = "-") -> str:
    """A table cell: a value and its 95% CI, ``v (lo-hi)`` (or ``sep`` between the ends)."""
    return f"{_fmt(value)} ({_fmt(lo)}{sep}{_fmt(hi)})"


def _check_whole(positive: dict, non_negative: dict) -> None:
    """CLI counts (None: not given) must be whole numbers > 0 or >= 0: input errors otherwise."""
    for name, value in positive.items():
        if value is not None and value <= 0:
            raise InputError(name, value, "a positive whole number")
    for name, value in non_negative.items():
        if value is not None and value < 0:
            raise InputError(name, value, "a non-negative whole number")


def _progress():
    """A progress bar on stderr for long runs (gone when done). Off when stderr is not a
    terminal (a log file, a pipe): there it would leave an empty line, also before an
    input error's one-line message."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


@app.command()
def trial(
    spec: str = typer.Argument(..., help="trial YAML file or preset (cartsim list trials: eliana, juliet, zuma-1, karmma, cartitude-1, mackensen-2022, ...)"),
    n: Optional[int] = typer.Option(None, help="number of virtual patients (overrides the spec)"),
    seed: Optional[int] = typer.Option(None, help="random seed (overrides the spec)"),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="patients per compiled batch"),
    out: Path = typer.Option(Path("cartsim-trial"), help="output folder (patients.parquet, summary.json, trial.png, chunks/)"),
    resume: bool = typer.Option(False, "--resume", help="continue a killed run from its completed chunks"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
    keep_trajectories: Optional[int] = typer.Option(
        None, "--keep-trajectories", help="keep the daily trajectories of the first K patients (trajectories.parquet)"),
    subgroups: Optional[str] = typer.Option(
        None, "--subgroups", help="comma-separated covariates to report endpoints by, e.g. tumour_burden,age_group"),
    dask: Optional[str] = typer.Option(
        None, "--dask", help="compute the chunks on a Dask cluster: a scheduler address (tcp://host:8786) "
                             "or local:N for N local worker processes (needs the dask extra)"),
) -> None:
    """Run a virtual trial: per-patient table and endpoints with 95% CIs."""
    from cartsim.population import load_trial, run_trial

    _check_whole({"n": n, "chunk_size": chunk_size}, {"seed": seed, "keep_trajectories": keep_trajectories})
    groups = None if subgroups is None else [g.strip() for g in subgroups.split(",") if g.strip()]
    trial_spec = load_trial(spec, n=n, seed=seed, chunk_size=chunk_size, keep_trajectories=keep_trajectories,
                            subgroups=groups)
    client = None if dask is None else _dask_client(dask)
    try:
        with _progress() as bar:
            task = bar.add_task(trial_spec.name, total=trial_spec.n)
            result = run_trial(trial_spec, out, resume=resume, client=client,
                               progress=lambda done, total: bar.update(task, completed=done))
    finally:
        if client is not None:
            client.close()
    from cartsim.report.figures import trial_figure

    trial_figure(result, out / "trial.png")
    if as_json:
        print(json.dumps(result.summary))
        return
    from rich.console import Console
    from rich.table import Table

    from cartsim.population.endpoints import SUBGROUP_ENDPOINTS, ci_key

    table = Table(title=f"virtual trial {trial_spec.name} (n = {trial_spec.n})")
    table.add_column("endpoint", no_wrap=True)
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    for k, v in result.summary.items():
        if k.endswith("_ci95") or k.endswith("_iqr") or k in ("baseline", "subgroups", "kinetics"):
            continue
        ci = result.summary.get(ci_key(k))
        table.add_row(k, _fmt(v), "" if ci is None else f"{_fmt(ci[0])}-{_fmt(ci[1])}")
    for k, v in result.summary.get("baseline", {}).items():  # the virtual population's Table 1
        if isinstance(v, dict) and "median" in v:
            text = f"{_fmt(v['median'])} ({_fmt(v['range'][0])}-{_fmt(v['range'][1])})"
        elif isinstance(v, dict):
            text = ", ".join(f"{g} {_fmt(p)}%" for g, p in v.items())
        else:
            text = _fmt(v)
        table.add_row(f"baseline {k}", text, "")
    Console().print(table)
    kin = Table(title="kinetics between patients")
    for col in ("metric (unit)", "median (IQR)", "geo mean (CV%)"):  # 5th-95th percentiles: summary.json
        kin.add_column(col, justify="left" if col.startswith("metric") else "right")
    for k, d in result.summary.get("kinetics", {}).items():
        kin.add_row(f"{k} ({d['unit']})", f"{_fmt(d['median'])} ({_fmt(d['iqr'][0])}-{_fmt(d['iqr'][1])})",
                    f"{_fmt(d['geo_mean'])} ({_fmt(d['geo_cv_pct'])})")
    Console().print(kin)

    def pct(row, e):
        v, (lo, hi) = row[f"{e}_pct"], row[f"{e}_ci95"]
        return "n/a" if v is None else _with_ci(v, lo, hi)

    for name, levels in result.summary.get("subgroups", {}).items():
        sub = Table(title=f"by {name}")
        for col in (name, "n", *(f"{e} %" for e in SUBGROUP_ENDPOINTS)):
            sub.add_column(col, justify="left" if col == name else "right")
        for level, row in levels.items():
            sub.add_row(level, str(row["n"]), *(pct(row, e) for e in SUBGROUP_ENDPOINTS))
        Console().print(sub)
    extra = f", {out/'trajectories.parquet'}" if result.trajectories is not None else ""
    print(f"wrote {out/'patients.parquet'}{extra}, {out/'trial.png'} and {out/'summary.json'}")


def _dask_client(where: str):
    """A ``dask.distributed`` client: ``local:N`` starts N worker processes here (one
    thread each: every chunk already solves its blocks on all cores); anything else is a
    scheduler address."""
    expected = "a Dask scheduler address (tcp://host:8786) or local:N (N local worker processes)"
    try:
        from distributed import Client
    except ImportError:
        raise InputError("--dask", where, "the dask extra installed: pip install -e '.[dask]'") from None
    if where.startswith("local:"):
        n = where.removeprefix("local:")
        if not n.isdigit() or int(n) < 1:
            raise InputError("--dask", where, expected)
        return Client(n_workers=int(n), threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        return Client(where, timeout=10)
    except (OSError, TimeoutError, ValueError) as err:
        raise InputError("--dask", where, f"{expected} that answers ({type(err).__name__})") from None


@app.command()
def compare(
    spec_a: str = typer.Argument(..., help="trial A: YAML file or preset (the reference)"),
    spec_b: str = typer.Argument(..., help="trial B: YAML file or preset (the what-if), same indication"),
    n: Optional[int] = typer.Option(None, help="virtual patients in each arm (default: A's n)"),
    seed: Optional[int] = typer.Option(None, help="random seed of both arms (default: A's seed)"),
    out: Path = typer.Option(Path("cartsim-compare"), help="output folder (a/, b/, comparison.json)"),
    as_json: bool = typer.Option(False, "--json", help="print the comparison as one JSON object"),
) -> None:
    """Compare two virtual trials on the same virtual patients: B minus A with paired 95% CIs."""
    from rich.console import Console
    from rich.table import Table

    from cartsim.population import load_trial
    from cartsim.population.compare import compare_trials

    _check_whole({"n": n}, {"seed": seed})
    a = load_trial(spec_a, n=n, seed=seed)
    b = load_trial(spec_b)
    with _progress() as bar:
        tasks = {k: bar.add_task(f"{k.upper()} {s.name}", total=a.n) for k, s in (("a", a), ("b", b))}
        result = compare_trials(a, b, out, progress=lambda k, done, total: bar.update(tasks[k], completed=done))
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(result, indent=2))
    if as_json:
        print(json.dumps({k: v for k, v in result.items() if k != "summaries"}))
        return
    table = Table(title=f"{result['b']} vs {result['a']} ({result['n_paired']} paired patients)")
    for col in ("endpoint", "A %", "B %", "B - A (95% CI)"):
        table.add_column(col, justify="left" if col == "endpoint" else "right", no_wrap=col == "endpoint")
    for e, r in result["endpoints"].items():
        lo, hi = r["difference_ci95"]
        table.add_row(e, _fmt(r["a_pct"]), _fmt(r["b_pct"]), _with_ci(r["difference_pct"], lo, hi, " to "))
    for m, r in result["kinetics"].items():
        lo, hi = r["ci95"]
        if "geo_mean_ratio" in r:
            table.add_row(f"{m} B/A", "", "", "x" + _with_ci(r["geo_mean_ratio"], lo, hi, " to "))
        else:
            table.add_row(f"{m} B-A", "", "", _with_ci(r["mean_difference"], lo, hi, " to "))
    Console().print(table)
    print(f"wrote {out / 'a'}, {out / 'b'} and {out / 'comparison.json'}")


@app.command()
def sweep(
    spec: str = typer.Argument(..., help="trial YAML file or preset"),
    dose: str = typer.Option(..., help="comma-separated doses, flat (5e7,1.5e8,4.5e8) or per kg (1e6/kg,2e6/kg)"),
    n: Optional[int] = typer.Option(None, help="virtual patients in each arm (default: the spec's n)"),
    seed: Optional[int] = typer.Option(None, help="random seed of every arm (default: the spec's)"),
    out: Path = typer.Option(Path("cartsim-sweep"), help="output folder (dose-1/, dose-2/, ..., sweep.json)"),
    as_json: bool = typer.Option(False, "--json", help="print the sweep as one JSON object"),
) -> None:
    """Run one virtual trial at several doses on the same virtual patients (dose-response)."""
    from rich.console import Console
    from rich.table import Table

    from cartsim.population import load_trial
    from cartsim.population.compare import SWEEP_ENDPOINTS, dose_sweep

    _check_whole({"n": n}, {"seed": seed})
    doses = [d.strip() for d in dose.split(",") if d.strip()]
    trial_spec = load_trial(spec, n=n, seed=seed)
    with _progress() as bar:
        tasks = {k: bar.add_task(f"dose {d}", total=trial_spec.n) for k, d in enumerate(doses, start=1)}
        result = dose_sweep(trial_spec, doses, out, progress=lambda k, done, total: bar.update(tasks[k], completed=done))
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(result, indent=2))
    if as_json:
        print(json.dumps(result))
        return
    arms = result["arms"]
    table = Table(title=f"{result['trial']} by dose ({result['n']} patients, the same in every arm)")
    table.add_column("endpoint", no_wrap=True)
    for arm in arms:
        table.add_column(arm["dose"], justify="right")

    for e in SWEEP_ENDPOINTS:
        table.add_row(f"{e} %", *(_with_ci(a[f"{e}_pct"], *a[f"{e}_ci95"]) for a in arms))
    table.add_row("Cmax cells/uL, median", *(_with_ci(a["cmax_cells_per_ul_median"], *a["cmax_cells_per_ul_median_ci95"])
                                             for a in arms))
    for e in SWEEP_ENDPOINTS:  # paired differences against the first dose
        diffs = [a["vs_first"]["endpoints"][e] for a in arms[1:]]
        table.add_row(f"{e}, points vs {arms[0]['dose']}", "",
                      *(_with_ci(d["difference_pct"], *d["difference_ci95"], " to ") for d in diffs))
    Console().print(table)
    print(f"wrote {', '.join(str(out / f'dose-{k}') for k in range(1, len(doses) + 1))} and {out / 'sweep.json'}")


@app.command("list")
def list_(what: str = typer.Argument("products", help="products, indications, policies or trials")) -> None:
    """List the packaged presets."""
    from cartsim.patient import INDICATIONS, list_policies, list_products
    from cartsim.population import list_trials

    options = {"products": list_products, "indications": lambda: list(INDICATIONS), "policies": list_policies,
               "trials": list_trials}
    if what not in options:
        raise InputError("what", what, "products, indications, policies or trials")
    print("\n".join(options[what]()))


def _usage_error(err: BaseException) -> str | None:
    """The message of a command-line usage error (click's, whichever copy typer ships)."""
    if getattr(err, "exit_code", None) == 2 and hasattr(err, "format_message"):
        msg = err.format_message()
        if not msg:  # "no arguments": help has been shown
            return ""
        ctx = getattr(err, "ctx", None)
        if ctx is not None and getattr(ctx, "command_path", None):
            msg += f" (see: {ctx.command_path} --help)"
        return msg
    return None


def _compilation_cache() -> None:
    """Keep compiled XLA programs on disk between runs (saves most of a run's start-up).

    ``CARTSIM_CACHE_DIR`` sets the folder (default: the user cache folder); an empty value
    turns the cache off. The library itself never writes a cache unless asked.
    """
    import os

    folder = os.environ.get("CARTSIM_CACHE_DIR")
    if folder is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "cartsim", "xla")
    if not folder:
        return
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the Typer app, turning every input error into one line + exit 2."""
    _compilation_cache()
    try:
        rc = app(args=argv, standalone_mode=False, prog_name="cartsim")
    except InputError as err:
        print(f"cartsim: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except typer.Exit as ex:
        return ex.exit_code
    except typer.Abort:
        return 130
    except Exception as err:
        msg = _usage_error(err)
        if msg is None:
            raise
        if not msg:
            return 0
        print(f"cartsim: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
