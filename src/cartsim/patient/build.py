"""Assemble per-patient parameters and initial states from the data files.

This is where product attributes, indication, lymphodepletion and patient covariates
become numbers for :mod:`cartsim.patient.model`. Pure functions of their inputs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from cartsim.params import InputError, ParameterTable, load_parameters
from cartsim.patient.indication import Indication, Lymphodepletion
from cartsim.patient.model import N_STATES, Obs, Theta
from cartsim.patient.product import Product

#: Smallest cell number represented (log floor for absent populations); far below one cell.
ABSENT_CELLS = 1e-12


@dataclass(frozen=True)
class PatientSpec:
    """One virtual patient's covariates and treatment. ``None`` means the indication default."""

    weight_kg: float | None = None
    tumour_burden: float | None = None
    dose_cells: float | None = None          # CAR+ viable cells (product dose basis)
    lymphodepletion: Lymphodepletion | None = None
    random_effects: dict[str, float] = field(default_factory=dict)  # name -> multiplier


def resolve(spec: PatientSpec, product: Product, indication: Indication) -> PatientSpec:
    """Fill defaults from the indication and the product label; validate ranges."""
    weight = indication.default_weight_kg.value if spec.weight_kg is None else spec.weight_kg
    if not (math.isfinite(weight) and weight > 0):
        raise InputError("weight_kg", spec.weight_kg, "a positive number of kg")
    burden = indication.burden.default.value if spec.tumour_burden is None else spec.tumour_burden
    b = indication.burden
    if not (math.isfinite(burden) and b.min <= burden <= b.max):
        raise InputError("tumour_burden", spec.tumour_burden,
                         f"{b.unit} between {b.min:g} and {b.max:g}")
    dose = product.dose.cells(weight) if spec.dose_cells is None else spec.dose_cells
    if not (math.isfinite(dose) and dose > 0):
        raise InputError("dose", spec.dose_cells, "a positive number of cells")
    ld = indication.lymphodepletion if spec.lymphodepletion is None else spec.lymphodepletion
    return PatientSpec(weight, burden, dose, ld, dict(spec.random_effects))


def build(product: Product, indication: Indication, spec: PatientSpec,
          params: ParameterTable | None = None) -> tuple[Theta, Obs, np.ndarray]:
    """Model parameters, observation constants and log initial state for one patient."""
    p = load_parameters() if params is None else params
    _check_antigen(product, indication)
    spec = resolve(spec, product, indication)
    theta, obs, y0 = _assemble(product, indication, spec.weight_kg, spec.tumour_burden, spec.dose_cells,
                               spec.lymphodepletion, spec.random_effects, p)
    return (Theta(*(float(x) for x in theta)), Obs(*(float(x) for x in obs)),
            np.asarray(y0, dtype=np.float64))


def build_batch(product: Product, indication: Indication, weight_kg, tumour_burden, dose_cells,
                lymphodepletion: Lymphodepletion | None = None, random_effects: dict | None = None,
                params: ParameterTable | None = None):
    """:func:`build` for many patients at once, vectorised (no per-patient Python).

    ``weight_kg``, ``tumour_burden`` and ``dose_cells`` are arrays of shape [n];
    ``random_effects`` maps parameter names to arrays of multipliers. Returns ``(theta,
    obs, y0, bad)``: Theta and Obs with fields of shape [n], y0 of shape [n, states], and
    ``bad``, a list of ``(index, reason)`` for patients whose inputs are out of range
    (their rows are computed from clipped inputs and must not be used).
    """
    p = load_parameters() if params is None else params
    _check_antigen(product, indication)
    w = np.asarray(weight_kg, dtype=np.float64)
    b = np.asarray(tumour_burden, dtype=np.float64)
    d = np.asarray(dose_cells, dtype=np.float64)
    n = w.shape[0]
    lim = indication.burden
    checks = [(~(np.isfinite(w) & (w > 0)), "weight_kg", w, "a positive number of kg"),
              (~(np.isfinite(b) & (b >= lim.min) & (b <= lim.max)), "tumour_burden", b,
               f"{lim.unit} between {lim.min:g} and {lim.max:g}"),
              (~(np.isfinite(d) & (d > 0)), "dose", d, "a positive number of cells")]
    bad = []
    for mask, name, values, expected in checks:
        bad += [(int(i), f"{name}: got {values[i]!r}, expected {expected}") for i in np.flatnonzero(mask)]
    if bad:  # keep the arithmetic finite; the rows are flagged
        w = np.where(np.isfinite(w) & (w > 0), w, indication.default_weight_kg.value)
        b = np.where(np.isfinite(b), np.clip(b, lim.min, lim.max), lim.default.value)
        d = np.where(np.isfinite(d) & (d > 0), d, 1.0)
    ld = indication.lymphodepletion if lymphodepletion is None else lymphodepletion
    re = {k: np.asarray(v, dtype=np.float64) for k, v in (random_effects or {}).items()}
    theta, obs, y0 = _assemble(product, indication, w, b, d, ld, re, p)
    full = functools.partial(np.broadcast_to, shape=(n,))
    theta = Theta(*(np.ascontiguousarray(full(np.asarray(x, dtype=np.float64))) for x in theta))
    obs = Obs(*(np.ascontiguousarray(full(np.asarray(x, dtype=np.float64))) for x in obs))
    return theta, obs, np.ascontiguousarray(np.broadcast_to(y0, (n, N_STATES))), sorted(bad)


def _check_antigen(product: Product, indication: Indication) -> None:
    if product.target_antigen not in indication.target_antigens:
        raise InputError("product", product.name,
                         f"a product against {'/'.join(indication.target_antigens)} for "
                         f"{indication.name} (got {product.target_antigen})")


def _assemble(product: Product, indication: Indication, weight_kg, tumour_burden, dose_cells,
              ld: Lymphodepletion, re: dict, p: ParameterTable):
    """The arithmetic of :func:`build`, elementwise: covariates may be scalars or arrays."""

    def v(name: str):
        return p.value(name) * re.get(name, 1.0)

    scale = weight_kg / v("body.reference_weight")
    cs = f"costim.{product.costim.lower()}"
    f_cd4 = product.cd4_cd8_ratio.value / (1 + product.cd4_cd8_ratio.value)
    K_N = v("lymph.K_N") * scale

    theta = Theta(
        rho=v("cart.rho_max") * v(f"{cs}.rho_multiplier") * (2 * f_cd4) ** v("cart.cd4_help_exponent"),
        K_stim=v("cart.K_stim"),
        compete=v("cart.antigen_competition"),
        k_em=v("cart.k_em") * v(f"{cs}.k_em_multiplier"),
        delta_e=v("cart.delta_e"),
        delta_m=v("cart.delta_m") * v(f"{cs}.delta_m_multiplier"),
        k_react=v("cart.k_react"),
        k_exh=v("cart.k_exh") * v(f"{cs}.k_exh_multiplier"),
        D50_exh=v("cart.D50_exh"),
        h_exh=v("cart.h_exh"),
        delta_x=v("cart.delta_x"),
        K_N=K_N,
        r_N=v("lymph.r_N"),
        boost_a=v("lymph.boost_a"),
        boost_b=v("lymph.boost_b"),
        gamma=(v("kill.gamma") * v(f"indication.{indication.name}.kill_multiplier")
               * (2 * (1 - f_cd4)) ** v("kill.cd8_exponent")),
        k_half=v("kill.k_half"),
        pot_m=v("kill.memory_potency"),
        pot_x=v("kill.exhausted_potency"),
        r_T=indication.tumour_growth_rate.value * re.get("tumour_growth_rate", 1.0),
        T_ext=v("tumour.extinction_cells"), K_T=1.0,
        stim_eff=v(f"indication.{indication.name}.stimulation_efficiency"),
        target_b=1.0 if product.target_antigen == "CD19" else 0.0,
        b_prod=0.0, b_turn=v("bcell.turnover"), kill_b=v("bcell.kill_multiplier"), T0=1.0,  # set below
        act_k=v("act.k"), K_kill=v("act.K_kill"), F_clear=v("act.F_clear"), K_car=v("act.K_car"),
        il6_base=v("il6.baseline"),
        neuro_k=v("neuro.k"), neuro_K_il6=v("neuro.K_il6"), neuro_K_car=v("neuro.K_car"),
        neuro_mult=v(f"{cs}.neuro_multiplier"),
        k_marker=math.log(2) / indication.marker.half_life_days.value if indication.marker else 1.0,
        marker_spared=indication.marker.spared_fraction.value if indication.marker else 1.0,
        toci_k=math.log(2) / v("toci.half_life"), toci_ec50=v("toci.ec50"),
        dex_k=math.log(2) / v("dex.half_life"), dex_ec50=v("dex.ec50"),
        dex_emax_exp=v("dex.emax_expansion"), dex_emax_act=v("dex.emax_activation"),
        dex_emax_neuro=v("dex.emax_neuro"),
    )

    # Targets and normal B cells
    b_normal = v("bcell.total_normal") * scale * indication.b_cell_production_factor.value
    kind = indication.burden.kind
    if kind in ("marrow_blast_pct", "marrow_plasma_cell_pct"):
        per_unit = v("marrow.total_cells") * scale / 100.0
        burden_max = 100.0
    elif kind == "mtv_ml":
        per_unit = v("lbcl.cells_per_ml")
        burden_max = math.inf
    else:  # autoreactive_b_pct: a share of the patient's CD19+ B cells
        per_unit = b_normal / 100.0
        burden_max = 100.0
        b_normal = b_normal * (1 - tumour_burden / 100.0)
    target = tumour_burden * per_unit
    # share of antigen-negative escape cells; a random effect spreads it between patients
    f_neg = np.minimum(v(f"indication.{indication.name}.antigen_negative_fraction") * re.get("antigen_negative_fraction", 1.0), 1.0)
    capacity = {"marrow_blast_pct": lambda: v("marrow.total_cells") * scale,
                "marrow_plasma_cell_pct": lambda: v("marrow.total_cells") * scale,
                "mtv_ml": lambda: indication.burden.max * v("lbcl.cells_per_ml"),
                "autoreactive_b_pct": lambda: np.maximum(b_normal + target, 1.0)}[kind]()
    theta = theta._replace(b_prod=v("bcell.turnover") * b_normal, T0=np.maximum(target, 1.0), K_T=capacity)

    # Lymphodepletion: log-depletion of endogenous T cells relative to the reference regimen
    ref_log_dep = np.log(v("lymph.K_N") / v("lymph.N0_after_ld_ref"))
    share = v("lymph.flu_share_of_depletion")
    intensity = (share * ld.fludarabine_total / v("lymph.ref_flu_total")
                 + (1 - share) * ld.cyclophosphamide_total / v("lymph.ref_cy_total"))
    n0 = K_N * np.exp(-ref_log_dep * intensity)

    car = product.car_cells(dose_cells)
    fm = product.memory_fraction.value
    e0 = car * (1 - fm) * v("cart.engraft_effector")
    m0 = car * fm * v("cart.engraft_effector") * v("cart.memory_engraftment_ratio")
    n0 = n0 + product.untransduced_cells(dose_cells) * v("cart.engraft_effector")

    # Every phenotype starts at no less than a negligible share of the engrafted dose: the
    # log-rate of a compartment fed by another (k * E / M) is singular at zero cells and
    # would force the explicit solver into needlessly tiny steps.
    seed_cells = v("cart.phenotype_floor_fraction") * (e0 + m0)
    e0, m0, x0 = np.maximum(e0, seed_cells), np.maximum(m0, seed_cells), seed_cells
    cells = np.broadcast_arrays(e0, m0, x0, target * (1 - f_neg), target * f_neg, b_normal, n0)
    y0 = np.log(np.maximum(np.stack(cells, axis=-1), ABSENT_CELLS))
    # linear states: activation, neuro-inflammation and marker at rest (1); no stimulation yet
    linear = np.broadcast_to(np.array([1.0, 1.0, 1.0, 0.0]), y0.shape[:-1] + (4,))
    y0 = np.concatenate([y0, linear], axis=-1)
    assert y0.shape[-1] == N_STATES

    blood_ul = v("blood.volume_per_kg") * weight_kg * 1e6
    obs = Obs(
        blood_frac_t=v("blood.lymphocyte_fraction_in_blood"),
        blood_ul=blood_ul,
        blood_frac_b=v("bcell.blood_fraction"),
        other_leuk=v("blood.other_leukocytes"),
        genomes_per_ug=1e6 / v("assay.dna_pg_per_cell"),
        vcn=product.vcn_per_car_cell.value,
        burden_scale=per_unit,
        burden_max=burden_max,
        marker_base=indication.marker.baseline.value if indication.marker else 1.0,
        temp_base=v("crs.temp_baseline"), temp_rise=v("crs.temp_max_rise"),
        il6_fever_half=v("crs.il6_fever_half"),
        il6_g2=v("crs.il6_grade2"), il6_g3=v("crs.il6_grade3"), il6_g4=v("crs.il6_grade4"),
        ice_hill=v("neuro.ice_hill"), q_grade4=v("neuro.q_grade4"),
    )
    return theta, obs, y0
