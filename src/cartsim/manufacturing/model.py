"""Equations of the manufacturing model: pure, vectorised numpy functions.

Every function takes arrays (one entry per batch; culture-day arrays broadcast against
them) and the parameter table ``p`` (``manufacturing_parameters.csv``). The equations
are written out in ``docs/manufacturing.md``.
"""

from __future__ import annotations

import math

import numpy as np

from cartsim.params import ParameterTable


def logit(x):
    x = np.asarray(x, dtype=float)
    return np.log(x) - np.log1p(-x)


def expit(x):
    # numpy has no logistic function; 0.5*(1+tanh(x/2)) is the overflow-free form
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


# --- starting material ---------------------------------------------------------------

def apheresis_cd3_cells(alc_per_ul, cd3_pct, p: ParameterTable):
    """CD3+ cells in the apheresis product: blood CD3+/uL x volume processed x collection efficiency."""
    per_litre = np.asarray(alc_per_ul) * 1e6 * np.asarray(cd3_pct) / 100.0   # cells/uL -> cells/L
    return per_litre * p.value("apheresis.volume_processed") * p.value("apheresis.collection_efficiency")


def log_fitness(prior_lines, cd4_cd8, bendamustine, z_patient, z_run, activation_failed, p: ParameterTable):
    """log T-cell fitness (1 = the reference patient): prior therapy, CD4 help, bendamustine,
    unexplained patient and run variation, and activation failure of the run."""
    sd = p.value("fitness.log_sd")
    share = p.value("fitness.patient_share_of_variance")
    return (-p.value("fitness.log_per_prior_line") * (np.asarray(prior_lines) - p.value("reference.prior_lines"))
            + p.value("fitness.cd4_cd8_exponent") * np.log(np.asarray(cd4_cd8) / p.value("reference.cd4_cd8"))
            + np.where(bendamustine, np.log(p.value("fitness.bendamustine_multiplier")), 0.0)
            + sd * (np.sqrt(share) * z_patient + np.sqrt(1.0 - share) * z_run)
            + np.where(activation_failed, np.log(p.value("fitness.activation_failure_multiplier")), 0.0))


def memory_fraction_at_apheresis(prior_lines, z, p: ParameterTable):
    """Memory-like (naive/stem/central memory) share of T cells collected, falling with prior lines."""
    return expit(logit(p.value("phenotype.memory_fraction_ref"))
                 - p.value("phenotype.memory_logit_per_prior_line")
                 * (np.asarray(prior_lines) - p.value("reference.prior_lines"))
                 + p.value("phenotype.memory_logit_sd") * z)


# --- culture ---------------------------------------------------------------------------

def lag_days(fitness, p: ParameterTable):
    """Lag after activation: longer for less fit T cells."""
    return np.minimum(p.value("culture.lag_days") / fitness, p.value("culture.lag_days_max"))


def growth_rate(fitness, cytokines: str, p: ParameterTable):
    """Net expansion rate after the lag (1/day)."""
    return p.value("culture.growth_rate") * fitness * p.value(f"cytokine.{cytokines}.growth_multiplier")


def viable_t_cells(t, t0, lag, rate, capacity, p: ParameterTable):
    """Viable T cells on culture day ``t`` (closed form).

    Lag phase: T = T0·exp(-d·t). Then logistic growth towards ``capacity``:
    T = K / (1 + (K/T_L - 1)·exp(-r·(t - L))), T_L = T0·exp(-d·L).
    """
    t = np.asarray(t, dtype=float)
    d = p.value("culture.lag_death_rate")
    in_lag = t0 * np.exp(-d * np.minimum(t, lag))
    t_l = t0 * np.exp(-d * lag)
    grown = capacity / (1.0 + (capacity / t_l - 1.0) * np.exp(-rate * np.maximum(t - lag, 0.0)))
    return np.where(t <= lag, in_lag, grown)


def memory_fraction(t, f0, cytokines: str, p: ParameterTable):
    """Memory-like share of the T cells on culture day ``t``: f0·exp(-k_diff·m_cyt·t)."""
    k = p.value("phenotype.differentiation_rate") * p.value(f"cytokine.{cytokines}.differentiation_multiplier")
    return f0 * np.exp(-k * np.asarray(t, dtype=float))


def cd4_cd8_ratio(t, ratio0, lag, p: ParameterTable):
    """CD4:CD8 on culture day ``t``: CD8 cells outgrow CD4 cells once expansion starts."""
    grow_days = np.maximum(np.asarray(t, dtype=float) - lag, 0.0)
    return ratio0 * np.exp(-p.value("culture.cd8_growth_advantage") * grow_days)


def transduction(moi, z, p: ParameterTable, log_fit=0.0):
    """CAR+ share and vector copies from the MOI.

    Integrations per cell are Poisson given a cell's susceptibility, and susceptibility is
    gamma-distributed across cells (shape k), so copies per cell are negative binomial with
    mean m = MOI·eta·F^b·exp(sd·z) (F: T-cell fitness; activated, cycling cells are more
    permissive). Returns (CAR+ fraction, mean copies per cell, mean copies
    per CAR+ cell): P(CAR+) = 1 - (1 + m/k)^-k; copies per CAR+ cell = m / P(CAR+).
    """
    k = p.value("transduction.heterogeneity_shape")
    m = (np.asarray(moi, dtype=float) * p.value("transduction.eta")
         * np.exp(p.value("transduction.fitness_exponent") * np.asarray(log_fit) + p.value("transduction.log_sd") * z))
    car = -np.expm1(-k * np.log1p(m / k))
    return car, m, m / car


def vcn_distribution(mean_copies, max_copies: int = 20):
    """Share of CAR+ cells carrying 1..max_copies vector copies (the last bin is >= max_copies).

    Zero-truncated negative binomial with the shape of ``transduction.heterogeneity_shape``.
    ``mean_copies`` (copies per cell, all cells) may be an array; the result has a trailing
    axis of length ``max_copies``.
    """
    from cartsim.manufacturing.process import manufacturing_parameters

    k = manufacturing_parameters().value("transduction.heterogeneity_shape")
    m = np.asarray(mean_copies, dtype=float)[..., None]
    n = np.arange(1, max_copies + 1, dtype=float)
    # log of the negative-binomial coefficient Γ(n+k)/(Γ(k)·n!): depends on n only (numpy has no log-gamma)
    log_coef = np.array([math.lgamma(x + k) - math.lgamma(k) - math.lgamma(x + 1) for x in n])
    q = m / (m + k)                                    # NB "success" probability
    log_pmf = log_coef + k * np.log1p(-q) + n * np.log(q)
    pmf = np.exp(log_pmf) / (-np.expm1(k * np.log1p(-q)))   # / P(n >= 1)
    pmf[..., -1] += np.clip(1.0 - pmf.sum(axis=-1), 0.0, None)
    return pmf


def viability_fresh(log_fit, z, p: ParameterTable):
    """Viability of the fresh product (fraction)."""
    return expit(logit(p.value("viability.fresh_median"))
                 + p.value("viability.logit_per_log_fitness") * log_fit + p.value("viability.logit_sd") * z)


def viability_thawed(v_fresh, p: ParameterTable):
    """Viability after freezing and thawing (fraction)."""
    return expit(logit(v_fresh) - p.value("viability.cryo_logit_loss"))


def potency_surviving(car_fraction, viability, z, p: ParameterTable):
    """NALM6 targets surviving at E:T 1:1: log S = log S_ref · (CAR+ viable share / reference) + noise."""
    share = np.asarray(car_fraction) * np.asarray(viability) / p.value("potency.car_viable_ref")
    return np.exp(np.log(p.value("potency.surviving_ref")) * share + p.value("potency.log_sd") * z)
