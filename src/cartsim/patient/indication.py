"""Indications: what the CAR-T cells target and how response is judged."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from cartsim.params import InputError, data_path, load_yaml
from cartsim.patient._schema import SourcedValue, input_error_from
from cartsim.patient.product import Antigen

BurdenKind = Literal["marrow_blast_pct", "mtv_ml", "marrow_plasma_cell_pct", "autoreactive_b_pct"]


class Burden(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: BurdenKind
    unit: str
    default: SourcedValue
    min: float
    max: float


class Lymphodepletion(BaseModel):
    """A Flu/Cy regimen (daily doses in mg/m2 and days of each drug)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fludarabine_mg_m2_per_day: float = 0.0
    fludarabine_days: int = 0
    cyclophosphamide_mg_m2_per_day: float = 0.0
    cyclophosphamide_days: int = 0
    source: str = "user input"
    evidence: str = "assumption"

    @property
    def fludarabine_total(self) -> float:
        return self.fludarabine_mg_m2_per_day * self.fludarabine_days

    @property
    def cyclophosphamide_total(self) -> float:
        return self.cyclophosphamide_mg_m2_per_day * self.cyclophosphamide_days


NO_LYMPHODEPLETION = Lymphodepletion(source="no lymphodepletion", evidence="assumption")


class Marker(BaseModel):
    """A serum marker secreted by the target cells (M-protein, autoantibody)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    unit: str
    baseline: SourcedValue
    half_life_days: SourcedValue
    spared_fraction: SourcedValue
    normal_upper: SourcedValue | None = None


class Response(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    criteria: str
    cr_blast_pct: SourcedValue | None = None
    cr_volume_ml: SourcedValue | None = None
    cr_marker_fraction: SourcedValue | None = None
    cr_target_fraction: SourcedValue | None = None   # autoimmunity: clone depleted below this share of baseline
    vgpr_marker_fraction: SourcedValue | None = None
    pr_marker_fraction: SourcedValue | None = None
    pr_fraction_of_baseline: SourcedValue | None = None
    pd_fraction_of_baseline: SourcedValue | None = None
    pd_fraction_of_nadir: SourcedValue | None = None


class Indication(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["b-all", "lbcl", "mm", "sle"]
    display_name: str
    target_antigens: list[Antigen]
    default_product: str
    burden: Burden
    default_weight_kg: SourcedValue
    tumour_growth_rate: SourcedValue
    b_cell_production_factor: SourcedValue
    lymphodepletion: Lymphodepletion
    marker: Marker | None
    response: Response


INDICATIONS = ("b-all", "lbcl", "mm", "sle")


def load_indication(name: str) -> Indication:
    if name not in INDICATIONS:
        raise InputError("indication", name, f"one of {', '.join(INDICATIONS)}")
    raw = load_yaml(data_path("indications", f"{name}.yaml"))
    try:
        return Indication.model_validate(raw)
    except ValidationError as err:  # packaged data: a bug, but report it the same way
        raise input_error_from(err, f"indication {name}") from None
