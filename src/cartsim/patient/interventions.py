"""Toxicity management policies: daily rules, as data.

A policy is a list of rules; each day, after grading, every rule whose trigger is met
(CRS grade >= threshold OR ICANS grade >= threshold) gives one dose of its drug, up to
``max_doses``. Doses raise the drug exposure used by :func:`cartsim.patient.model.drug_effects`:
tocilizumab in units of one 8 mg/kg dose, dexamethasone in units of 40 mg/day.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cartsim.params import InputError, data_path, load_yaml
from cartsim.patient._schema import input_error_from

#: Drugs the model knows, with the exposure unit one dose-equivalent stands for.
DRUGS = {"tocilizumab": (0, 8.0, "mg/kg"), "dexamethasone": (1, 40.0, "mg/day")}
_NEVER = 99  # a threshold no grade reaches


class Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    crs_grade_at_least: int | None = Field(None, ge=0, le=4)
    icans_grade_at_least: int | None = Field(None, ge=0, le=4)

    @model_validator(mode="after")
    def _any(self) -> Trigger:
        if self.crs_grade_at_least is None and self.icans_grade_at_least is None:
            raise ValueError("needs crs_grade_at_least or icans_grade_at_least")
        return self


class DoseRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    value: float = Field(gt=0)
    unit: str
    max_mg: float | None = Field(None, gt=0)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    drug: Literal["tocilizumab", "dexamethasone"]
    when: Trigger
    dose: DoseRule
    max_doses: int = Field(ge=1)
    source: str = "user input"

    @model_validator(mode="after")
    def _unit(self) -> Rule:
        expected = DRUGS[self.drug][2]
        if self.dose.unit != expected:
            raise ValueError(f"dose unit for {self.drug} must be {expected!r}")
        return self


class ManagementPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str = ""
    rules: list[Rule] = []


class PolicyArrays(NamedTuple):
    drug: jnp.ndarray        # int, 0 tocilizumab, 1 dexamethasone
    crs_thr: jnp.ndarray     # int
    icans_thr: jnp.ndarray   # int
    max_doses: jnp.ndarray   # int
    dose_equiv: jnp.ndarray  # float, dose-equivalents per dose


def policy_arrays(policy: ManagementPolicy) -> PolicyArrays:
    rules = policy.rules
    def col(f, dtype):
        return jnp.asarray([f(r) for r in rules], dtype=dtype).reshape(len(rules))
    return PolicyArrays(
        drug=col(lambda r: DRUGS[r.drug][0], jnp.int32),
        crs_thr=col(lambda r: _NEVER if r.when.crs_grade_at_least is None else r.when.crs_grade_at_least, jnp.int32),
        icans_thr=col(lambda r: _NEVER if r.when.icans_grade_at_least is None else r.when.icans_grade_at_least, jnp.int32),
        max_doses=col(lambda r: r.max_doses, jnp.int32),
        dose_equiv=col(lambda r: r.dose.value / DRUGS[r.drug][1], jnp.float64),
    )


def apply_policy(pa: PolicyArrays, crs, icans, counts, exposure):
    """One day's decisions. Returns (new counts, new exposure[2], doses given per drug[2])."""
    trig = (crs >= pa.crs_thr) | (icans >= pa.icans_thr)
    give = trig & (counts < pa.max_doses)
    counts = counts + give.astype(counts.dtype)
    # [drug, rule] masks and sums, not a scatter: scatters are slow under vmap on CPU
    dosed = (pa.drug[None, :] == jnp.arange(2)[:, None]) & give[None, :]
    added = jnp.sum(jnp.where(dosed, pa.dose_equiv[None, :], 0.0), axis=1)
    given = jnp.sum(dosed.astype(jnp.int32), axis=1)
    return counts, exposure + added, given


def list_policies() -> list[str]:
    return sorted(p.stem for p in data_path("policies").glob("*.yaml"))


def load_policy(name_or_path: str | Path = "default") -> ManagementPolicy:
    text = str(name_or_path)
    if text in list_policies():
        raw = load_yaml(data_path("policies", f"{text}.yaml"))
    elif Path(text).is_file():
        raw = load_yaml(Path(text))
    else:
        raise InputError("policy", text, f"one of {', '.join(list_policies())} or a .yaml path")
    try:
        return ManagementPolicy.model_validate(raw)
    except ValidationError as err:
        raise input_error_from(err, f"policy {text}") from None
