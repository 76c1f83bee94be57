"""Trial specifications (YAML, validated by pydantic) and the packaged presets."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, field_validator, ConfigDict, Field, ValidationError, model_validator

from cartsim.params import InputError, ParameterTable, data_path, load_yaml, read_user_yaml
from cartsim.patient._schema import input_error_from
from cartsim.patient.indication import Lymphodepletion


class DoseLevel(BaseModel):
    """One dose: CAR+ viable cells per kg (optionally capped) or flat."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    per_kg: float | None = Field(None, gt=0)
    flat: float | None = Field(None, gt=0)
    cap: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> DoseLevel:
        if (self.per_kg is None) == (self.flat is None):
            raise ValueError("exactly one of per_kg or flat")
        return self

    def cells(self, weight_kg) -> np.ndarray:
        """Cells for an array of body weights."""
        w = np.asarray(weight_kg, dtype=float)
        cells = self.per_kg * w if self.per_kg is not None else np.full(w.shape, self.flat)
        return np.minimum(cells, self.cap) if self.cap is not None else cells


class SharedLevel(DoseLevel):
    """A dose level of a trial and the share (%) of its patients who received it."""

    pct: float = Field(gt=0, le=100)


class DoseRule(BaseModel):
    """CAR+ viable cells: one dose (``per_kg``, optionally capped, or ``flat``) for every
    patient, or ``levels``, each with the share (%) of the patients given it, as trials
    that infused several dose levels report their results over all of them. Omitted: the
    product label. A patient's level is drawn on its own stream (covariate ``dose_level``,
    numbered from 1 in the order given), so it changes no other draw."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    per_kg: float | None = Field(None, gt=0)
    flat: float | None = Field(None, gt=0)
    cap: float | None = Field(None, gt=0)
    levels: list[SharedLevel] | None = Field(None, min_length=1)
    source: str = "model assumption"
    evidence: str = "assumption"

    #: how far the shares of ``levels`` may sum from 100 (published shares are rounded)
    PCT_TOLERANCE: ClassVar[float] = 0.5

    @model_validator(mode="after")
    def _one(self) -> DoseRule:
        if self.levels is None:
            DoseLevel(per_kg=self.per_kg, flat=self.flat, cap=self.cap)  # exactly one of per_kg, flat
        elif (self.per_kg, self.flat, self.cap) != (None, None, None):
            raise ValueError("either levels or one dose (per_kg or flat, optionally with cap), not both")
        elif abs(sum(lv.pct for lv in self.levels) - 100) > self.PCT_TOLERANCE:
            raise ValueError(f"levels whose pct sum to 100 (within {self.PCT_TOLERANCE:g}); "
                             f"these sum to {sum(lv.pct for lv in self.levels):g}")
        return self

    def covariates(self) -> dict:
        """The dose level drawn per patient, as a covariate of the trial (none for one dose)."""
        from cartsim.population.sampling import Covariate

        if self.levels is None:
            return {}
        total = sum(lv.pct for lv in self.levels)
        return {"dose_level": Covariate(distribution="categorical", probs=[lv.pct / total for lv in self.levels],
                                        description="dose level (1 = the first in the spec)",
                                        source=self.source, evidence=self.evidence)}

    def cells(self, weight_kg, level=None) -> np.ndarray:
        """Cells for an array of body weights (and, with ``levels``, dose levels from 1)."""
        if self.levels is None:
            return DoseLevel(per_kg=self.per_kg, flat=self.flat, cap=self.cap).cells(weight_kg)
        per_level = np.stack([lv.cells(weight_kg) for lv in self.levels])  # [levels, patients]
        lvl = np.asarray(level, dtype=np.int64)
        return per_level[lvl - 1, np.arange(lvl.size)]


class Eligibility(BaseModel):
    """Inclusion limits, applied by truncating the covariate distributions (exact, by
    inversion: a patient outside them is never drawn, so no draws are wasted or skipped)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_burden: float | None = Field(None, ge=0)
    max_burden: float | None = Field(None, gt=0)
    min_age: float | None = Field(None, ge=0)
    max_age: float | None = Field(None, gt=0)
    min_prior_lines: int | None = Field(None, ge=0)
    max_prior_lines: int | None = Field(None, ge=0)

    #: eligibility fields by covariate: (lower-limit field, upper-limit field)
    FIELDS: ClassVar[dict[str, tuple[str, str]]] = {
        "tumour_burden": ("min_burden", "max_burden"), "age_years": ("min_age", "max_age"),
        "prior_lines": ("min_prior_lines", "max_prior_lines")}

    def bounds(self) -> dict[str, tuple]:
        """The limits that are set, by covariate name: ``{name: (lower, upper)}``."""
        limits = {name: (getattr(self, lo), getattr(self, hi)) for name, (lo, hi) in self.FIELDS.items()}
        return {name: b for name, b in limits.items() if b != (None, None)}


class Bridging(BaseModel):
    """Bridging therapy between apheresis and infusion, through what it does to the tumour
    burden at infusion: ``bridged_pct`` of the patients are bridged, and the disease of
    ``response_pct`` of the bridged responds, its burden multiplied by
    ``response_burden_factor`` (default: ``bridging.response_burden_factor`` in
    parameters.csv). Every other patient is infused with the baseline burden (growth
    during the wait is the pathway's business, not the trial's). Each patient draws both
    from their own streams, so bridging changes no other draw."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    bridged_pct: float = Field(ge=0, le=100)
    response_pct: float = Field(0.0, ge=0, le=100)
    response_burden_factor: float | None = Field(None, gt=0, le=1)
    source: str = "model assumption"
    evidence: str = "assumption"

    def covariates(self) -> dict:
        """The two Bernoulli draws, as covariates of the trial (kept, summarised, subgroups);
        a response is drawn among the bridged only."""
        from cartsim.population.sampling import Covariate

        common = {"distribution": "bernoulli", "source": self.source, "evidence": self.evidence}
        return {"bridged": Covariate(p=self.bridged_pct / 100, description="bridging therapy before infusion",
                                     **common),
                "bridging_response": Covariate(p=self.response_pct / 100, among="bridged",
                                               description="disease responded to bridging therapy", **common)}

    def at_infusion(self, burden, responded, params: ParameterTable) -> np.ndarray:
        """Tumour burden at infusion of patients with baseline ``burden`` whose disease
        ``responded`` (0/1) to bridging."""
        factor = self.response_burden_factor
        if factor is None:
            factor = params.value("bridging.response_burden_factor")
        return np.where(np.asarray(responded) > 0, factor, 1.0) * np.asarray(burden, dtype=float)


class Correlation(BaseModel):
    """Correlation between two random effects (of their standard-normal draws)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    between: tuple[str, str]
    rho: float = Field(gt=-1, lt=1)


class TrialSpec(BaseModel):
    """A virtual trial. See docs/trial-schema.md."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    indication: Literal["b-all", "lbcl", "mm", "sle"]
    product: str | dict = Field(description="preset name or product attributes (the product YAML schema)")
    dose: DoseRule | None = None
    lymphodepletion: Lymphodepletion | Literal["none", "default"] = "default"
    policy: str = "default"
    eligibility: Eligibility = Eligibility()
    bridging: Bridging | None = Field(None, description="bridging therapy (burden at infusion); none if omitted")
    population: dict[str, dict] = Field(
        {}, description="covariate distributions replacing the indication's, field by field "
                        "(params/data/population/<indication>.yaml), e.g. a trial's baseline table")
    n: int = Field(gt=0, le=10_000_000)
    seed: int = Field(0, ge=0)
    follow_up_days: int = Field(365, gt=0, le=3650)
    chunk_size: int = Field(4096, gt=0, le=100_000)
    subgroups: list[str] = Field(
        [], description="covariates (or age_group) whose levels get their own endpoints with CIs")
    correlations: list[Correlation] = Field(
        [], description="correlated random effects (names from variability.csv); default independent")
    keep_trajectories: int | list[int] = Field(
        0, description="daily trajectories kept for the first N patients, or for a list of patient indices")

    @field_validator("keep_trajectories")
    @classmethod
    def _keep(cls, v):
        if isinstance(v, int) and v < 0 or isinstance(v, list) and any(i < 0 for i in v):
            raise ValueError("a patient count or a list of patient indices, all >= 0")
        return v

    def covariates(self) -> dict:
        """The trial's covariate distributions: the indication's with the spec's
        ``population`` overrides, plus the bridging and dose-level draws."""
        from cartsim.population.sampling import check_among, covariate_model

        extra = self.bridging.covariates() if self.bridging is not None else {}
        if self.dose is not None:
            extra.update(self.dose.covariates())
        cov = {**covariate_model(self.indication, self.population), **extra}
        check_among(cov)
        return cov

    def kept(self) -> np.ndarray:
        """Indices of the patients whose daily trajectories are kept (sorted, < n)."""
        v = self.keep_trajectories
        idx = np.arange(min(v, self.n)) if isinstance(v, int) else np.asarray(sorted(set(v)), dtype=np.int64)
        return idx[idx < self.n].astype(np.int64)


def list_trials() -> list[str]:
    return sorted(p.stem for p in data_path("trials").glob("*.yaml"))


def load_trial(name_or_path: str | Path, **overrides) -> TrialSpec:
    """Load a preset or a YAML file; ``overrides`` (e.g. ``n=``, ``seed=``) replace fields."""
    text = str(name_or_path)
    if text in list_trials():
        raw = load_yaml(data_path("trials", f"{text}.yaml"))
        prefix = f"trial {text}"
    elif Path(text).is_file():
        raw = read_user_yaml(text, "spec", "trial fields")
        prefix = Path(text).name
    else:
        raise InputError("spec", text, f"a trial YAML file or one of {', '.join(list_trials())}")
    if not isinstance(raw, dict):
        raise InputError(prefix, raw, "a mapping of trial fields")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrialSpec.model_validate(raw)
    except ValidationError as err:
        raise input_error_from(err, prefix) from None
