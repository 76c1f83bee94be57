"""Manufacturing twin: published vs simulated table and the harvest-day figure.

    .venv/bin/python scripts/manufacturing_figure.py

Writes ``docs/img/manufacturing_harvest.png`` (harvest day 7 vs 12: culture growth,
phenotype, and the in-vivo CAR-T expansion and persistence in B-ALL that follow) and
rewrites the generated section of ``docs/manufacturing.md`` (between the
``<!-- BEGIN GENERATED -->`` and ``<!-- END GENERATED -->`` markers). Every published
figure comes from ``params/data/manufacturing_targets.csv``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cartsim.manufacturing import daily_culture, manufacture, manufacturing_targets, typical_batch  # noqa: E402
from cartsim.patient import simulate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "manufacturing.md"
FIG = ROOT / "docs" / "img" / "manufacturing_harvest.png"
N = 20_000
SEED = 2024
DAYS = (7, 12)
BEGIN, END = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"


def _fmt(x: float) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.2e}"


def comparison() -> tuple[str, dict]:
    tg = manufacturing_targets()
    poc = manufacture("poc", N, SEED).summary()
    cen = manufacture("central", N, SEED).summary()
    d13 = typical_batch("poc", 13).summary()
    d14 = typical_batch("poc", 14).summary()

    def t(name: str) -> str:
        p = tg[name]
        return f"{_fmt(p.value)} ({p.evidence})"

    rows = [
        ("apheresis to release, median (d)", "central", t("central.apheresis_to_release_median") +
         " EU axi-cel; acceptance 17-30", _fmt(cen["duration_days_median"]), "calibration (slot wait)"),
        ("apheresis to shipment + transport (d)", "central", t("central.apheresis_to_shipment_median") +
         " to shipment", _fmt(cen["delivery_days_median"]) + " to the ward", "check"),
        ("apheresis to release, median (d)", "poc", "acceptance 7-14; Sheba collection to delivery " +
         t("poc.sheba_collection_to_delivery") + "; Oslo target " + t("poc.oslo_target_turnaround") +
         "; Galapagos vein to vein " + t("poc.galapagos_vein_to_vein"), _fmt(poc["duration_days_median"]), "check"),
        ("manufacturing failure (% of batches)", "central", "1-9 (nine commercial rates); mean " + t("failure.target"),
         _fmt(cen["failure_pct"]), "calibration (activation failure)"),
        ("manufacturing failure (% of batches)", "poc", "no point-of-care rate in shared/reference",
         _fmt(poc["failure_pct"]), "prediction"),
        ("no product after re-manufacture (%)", "central / poc", "not tabulated",
         f"{_fmt(cen['final_failure_pct'])} / {_fmt(poc['final_failure_pct'])}", "prediction"),
        ("OOS products infused (%)", "central", f"liso-cel {t('oos.liso_cel_transcend')}, cilta-cel "
         f"{t('oos.cilta_cel_real_world')}", _fmt(cen["oos_pct"]), "check (split by reason calibrated)"),
        ("OOS for low dose / viability / potency / CAR (%)", "central",
         f"{tg.value('oos.share_low_dose')} / {tg.value('oos.share_viability')} / {tg.value('oos.share_potency')}"
         f" / {tg.value('oos.share_car_expression')}% of cilta-cel OOS products (x 12%)",
         " / ".join(_fmt(cen["oos_reasons_pct"][k]) for k in ("low_dose", "viability", "potency", "car_pos")),
         "calibration (first three)"),
        ("OOS products infused (%)", "poc", "no point-of-care rate in shared/reference", _fmt(poc["oos_pct"]),
         "prediction"),
        ("fold expansion in 13 d, typical batch", "poc", t("fold.zhu2018_13d") + " Zhu 2018",
         _fmt(d13["fold_expansion_median"]), "calibration (growth rate)"),
        ("fold expansion in 14 d, typical batch", "poc", t("fold.cd62l_14d") + " Prodigy CD62L process",
         _fmt(d14["fold_expansion_median"]), "check"),
        ("fold expansion at harvest day 8, median", "poc / central", "not tabulated",
         f"{_fmt(poc['fold_expansion_median'])} / {_fmt(cen['fold_expansion_median'])}", "prediction"),
        ("CAR+ %, median", "poc", f"Zhu 2018 mean {t('car_pos.zhu2018_mean')}; ARI-0001 lots "
         f"{tg.value('car_pos.ari0001_low'):g}-{tg.value('car_pos.ari0001_high'):g}",
         _fmt(poc["car_pos_pct_median"]), "derivation input (MOI model) / check"),
        ("CAR+ %, commercial tisa-cel", "-", t("car_pos.tisa_cel_commercial_median") + " (other vector; not a target)",
         "-", "not compared"),
        ("VCN, copies/cell, median", "poc", f"ARI-0001 lots {tg.value('vcn.ari0001_low'):g}-"
         f"{tg.value('vcn.ari0001_high'):g} (verified)", _fmt(poc["vcn_per_cell_median"]),
         "derivation input / check"),
        ("VCN per CAR+ cell, median", "poc", "not tabulated", _fmt(poc["vcn_per_car_cell_median"]), "prediction"),
        ("viability %, median", "poc / central", "ARI-0001 lots " + t("viability.ari0001"),
         f"{_fmt(poc['viability_pct_median'])} / {_fmt(cen['viability_pct_median'])}", "check"),
        ("CAR+ viable cells available, median", "poc", f"ARI-0001 lots {tg.value('yield.ari0001_low'):.3g}-"
         f"{tg.value('yield.ari0001_high'):.3g} (harvest day not given)", _fmt(poc["dose_available_median"]),
         "check"),
    ]
    head = "| quantity | platform | published (evidence) | simulated | role |\n|---|---|---|---|---|\n"
    table = head + "\n".join("| " + " | ".join(r) + " |" for r in rows)
    note = (f"\n\nSimulated: {N} batches, seed {SEED}, default (lbcl) population, harvest day 8 unless stated. "
            "*calibration*: the row was fitted by `python -m cartsim.manufacturing.calibrate`; *check*: compared, "
            "not fitted; *prediction*: no published figure to compare with.\n")
    return table + note, {"poc": poc, "central": cen}


def harvest_section() -> tuple[str, dict]:
    """Harvest day 7 vs 12 in B-ALL: culture, phenotype, in-vivo kinetics; writes the figure."""
    colors = {7: "tab:blue", 12: "tab:red"}
    fig, ax = plt.subplots(2, 2, figsize=(11, 8.5))
    pop = daily_culture("poc", 14, n_batches=2000, seed=SEED, indication="b-all")
    typ = daily_culture("poc", 14, typical=True, indication="b-all")
    day = typ["day"]
    a = ax[0, 0]
    lo, med, hi = np.percentile(pop["viable_cells"], [10, 50, 90], axis=1)
    a.fill_between(day, lo, hi, color="0.85", label="batches, 10-90%")
    a.plot(day, med, color="0.4", lw=1, label="batches, median")
    a.plot(day, typ["viable_cells"][:, 0], "k", lw=2, label="typical batch")
    for d in DAYS:
        a.axvline(d, color=colors[d], ls="--", label=f"harvest day {d}")
    a.set_yscale("log")
    a.set(xlabel="culture day", ylabel="viable cells", title="A  Culture growth (Prodigy TCT-like, IL-2)")
    a.legend(fontsize=8)

    rows, products, sims = {}, {}, {}
    for d in DAYS:
        b = typical_batch("poc", d, indication="b-all")
        s = manufacture("poc", N, SEED, harvest_day=d, indication="b-all").summary()
        products[d] = b.product(0)
        sims[d] = simulate("b-all", products[d], days=365)
        rows[d] = (b.summary(), s)
    a = ax[0, 1]
    x = np.arange(len(DAYS))
    mem = [rows[d][0]["memory_fraction_median"] for d in DAYS]
    a.bar(x, mem, color=[colors[d] for d in DAYS], label="memory-like (naive/stem/central memory)")
    a.bar(x, [1 - m for m in mem], bottom=mem, color="0.8", label="effector-like")
    for i, d in enumerate(DAYS):
        s = rows[d][1]
        a.errorbar(i, s["memory_fraction_median"], fmt="ko", ms=4)
        a.text(i, 1.02, f"CD4:CD8 {rows[d][0]['cd4_cd8_ratio_median']:.2f}\n"
                        f"{rows[d][0]['harvest_viable_cells_median']:.2g} cells", ha="center", fontsize=8)
    a.set_xticks(x, [f"harvest day {d}" for d in DAYS])
    a.set(ylim=(0, 1.18), ylabel="share of CAR+ T cells", title="B  Product phenotype (bars: typical; dots: median)")
    a.legend(fontsize=8, loc="center right")

    a = ax[1, 0]
    for d in DAYS:
        y = sims[d].daily["car_t_cells_per_ul"]
        m = sims[d].metrics
        a.plot(sims[d].daily["day"], y, color=colors[d], lw=2,
               label=f"harvest day {d}: Cmax {m['cmax_cells_per_ul']:.3g}/uL, day 365 {y[365]:.3g}/uL")
    a.set_yscale("log")
    a.set_ylim(bottom=1e-1)
    a.set(xlabel="days after infusion", ylabel="CAR-T cells / uL blood",
          title="C  In vivo, B-ALL typical patient (same dose)")
    ratio = sims[DAYS[0]].daily["car_t_cells_per_ul"] / sims[DAYS[1]].daily["car_t_cells_per_ul"]
    b = a.twinx()
    b.plot(sims[DAYS[0]].daily["day"], ratio, color="0.3", ls=":", lw=1.5,
           label=f"ratio day {DAYS[0]} / day {DAYS[1]} (right axis)")
    b.axhline(1.0, color="0.7", lw=0.8)
    b.set_ylim(0.8, 1.6)
    b.set_ylabel(f"CAR-T ratio, harvest day {DAYS[0]} / day {DAYS[1]}")
    h1, l1 = a.get_legend_handles_labels()
    h2, l2 = b.get_legend_handles_labels()
    a.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")

    a = ax[1, 1]
    for plat, c in (("poc", "tab:green"), ("central", "tab:purple")):
        r = manufacture(plat, N, SEED)
        a.hist(r.release_day[r.released], bins=np.arange(5, 60, 0.5), color=c, alpha=0.7,
               label=f"{plat}: median {np.nanmedian(r.release_day):.1f} d")
    a.set(xlabel="apheresis to release (days)", ylabel="batches", title="D  Calendar, harvest day 8")
    a.set_yscale("log")
    a.legend(fontsize=8)
    fig.tight_layout()
    FIG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIG, dpi=110)
    plt.close(fig)

    head = ("| harvest day | memory fraction (typical / median) | CD4:CD8 | viable cells at harvest | "
            "CAR+ dose infused | low-dose OOS % | apheresis to release, median (d) | Cmax CAR-T/uL | Tmax (d) | "
            "AUC 0-28 | CAR-T/uL day 90 | CAR-T/uL day 365 |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for d in DAYS:
        t, s = rows[d]
        m = sims[d].metrics
        y = sims[d].daily["car_t_cells_per_ul"]
        lines.append(f"| {d} | {t['memory_fraction_median']:.3f} / {s['memory_fraction_median']:.3f} | "
                     f"{t['cd4_cd8_ratio_median']:.2f} | {t['harvest_viable_cells_median']:.3g} | "
                     f"{products[d].dose.flat.value:.3g} | {s['oos_reasons_pct']['low_dose']:.2g} | "
                     f"{s['duration_days_median']:.3g} | {m['cmax_cells_per_ul']:.3g} | {m['tmax_days']:.3g} | "
                     f"{m['auc_0_28']:.3g} | {y[90]:.3g} | {y[365]:.3g} |")
    note = ("\n\nB-ALL population (typical patient: 39 kg, 3 prior lines), point-of-care preset; in vivo "
            "`cartsim.patient.simulate('b-all', product, days=365)` with each typical batch's Product as it is. "
            "Both products reach the 1e6/kg target, so the in-vivo difference comes from the phenotype "
            "(memory-like cells engraft better, `cart.memory_engraftment_ratio` > 1) and CD4:CD8. "
            "The in-vivo numbers move whenever the in-vivo model is re-tuned; rerun the script.\n")
    return head + "\n".join(lines) + note, rows


def _cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def parameter_tables() -> str:
    """Every row of manufacturing_parameters.csv and every sourced number of the presets."""
    from pydantic import BaseModel

    from cartsim.manufacturing import load_process, manufacturing_parameters
    from cartsim.params import Sourced

    out = ["### Biology and populations (`params/data/manufacturing_parameters.csv`)\n",
           "| name | value | unit | evidence | source | notes |", "|---|---|---|---|---|---|"]
    for prm in manufacturing_parameters().values():
        out.append(f"| `{prm.name}` | {prm.value:g} | {_cell(prm.unit)} | {prm.evidence} | {_cell(prm.source)} | "
                   f"{_cell(prm.notes)} |")

    def walk(obj, path):
        if isinstance(obj, Sourced):
            yield path, obj
        elif isinstance(obj, BaseModel):
            for name in type(obj).model_fields:
                yield from walk(getattr(obj, name), f"{path}.{name}" if path else name)
        elif isinstance(obj, list):
            for x in obj:
                yield from walk(x, f"{path}.{getattr(x, 'name', '?')}")

    procs = {n: dict(walk(load_process(n), "")) for n in ("poc", "central")}
    out += ["", "### Process presets (`params/data/manufacturing/poc.yaml`, `central.yaml`)\n",
            "| field | poc | central | evidence (poc / central) | source (poc; central if different) |",
            "|---|---|---|---|---|"]
    keys = list(dict.fromkeys([*procs["poc"], *procs["central"]]))
    for k in keys:
        a, b = procs["poc"].get(k), procs["central"].get(k)

        def val(v):
            if v is None:
                return "-"
            extra = f" ({v.dist}" + (f", log-SD {v.log_sd:g}" if getattr(v, "log_sd", 0) else "") + ")" \
                if getattr(v, "dist", "fixed") != "fixed" else ""
            return f"{v.value:g} {v.unit}{extra}"

        src = _cell(a.source if a else b.source)
        if a and b and a.source != b.source:
            src += f"; central: {_cell(b.source)}"
        out.append(f"| `{k}` | {val(a)} | {val(b)} | {a.evidence if a else '-'} / {b.evidence if b else '-'} | "
                   f"{src} |")
    return "\n".join(out) + "\n"


def main() -> int:
    table, _ = comparison()
    harvest, _ = harvest_section()
    block = (f"{BEGIN}\n<!-- written by scripts/manufacturing_figure.py; do not edit by hand -->\n\n"
             f"### Published vs simulated\n\n{table}\n### Harvest day 7 vs 12\n\n"
             f"![harvest day 7 vs 12](img/manufacturing_harvest.png)\n\n{harvest}\n"
             f"## Parameters\n\n{parameter_tables()}\n{END}")
    text = DOC.read_text() if DOC.exists() else f"# Manufacturing\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        print(f"{DOC} lacks the {BEGIN} / {END} markers", file=sys.stderr)
        return 1
    pre, rest = text.split(BEGIN, 1)
    _, post = rest.split(END, 1)
    DOC.write_text(pre + block + post)
    print(f"wrote {FIG} and the generated section of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
