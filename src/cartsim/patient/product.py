"""CAR-T products: attributes that change in-vivo kinetics, and the named presets.

A product is expressible by attributes alone; the presets (``tisa-cel``, ``axi-cel``, ...)
are YAML files on the same schema under ``params/data/products``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cartsim.params import InputError, Sourced, data_path, load_yaml, read_user_yaml
from cartsim.patient._schema import SourcedValue, input_error_from

Antigen = Literal["CD19", "BCMA"]
Costim = Literal["CD28", "4-1BB"]


class DoseSpec(BaseModel):
    """Label dose: per kg (optionally capped, optionally only up to a weight) and/or flat."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_kg: SourcedValue | None = None
    flat: SourcedValue | None = None
    cap: SourcedValue | None = None
    per_kg_max_weight_kg: SourcedValue | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> DoseSpec:
        if self.per_kg is None and self.flat is None:
            raise ValueError("needs per_kg or flat")
        for name in ("per_kg", "flat", "cap", "per_kg_max_weight_kg"):
            v = getattr(self, name)
            if v is not None and not v.value > 0:
                raise ValueError(f"{name} must be > 0")
        return self

    def cells(self, weight_kg: float) -> float:
        """CAR+ viable cells for a patient of ``weight_kg``."""
        use_per_kg = self.per_kg is not None and (
            self.flat is None
            or self.per_kg_max_weight_kg is None
            or weight_kg <= self.per_kg_max_weight_kg.value
        )
        cells = self.per_kg.value * weight_kg if use_per_kg else self.flat.value  # type: ignore[union-attr]
        if self.cap is not None:
            cells = min(cells, self.cap.value)
        return cells


def dose_cells(dose: DoseSpec, weight_kg) -> np.ndarray:
    """Vectorised :meth:`DoseSpec.cells` (cells for an array of body weights)."""
    w = np.asarray(weight_kg, dtype=float)
    if dose.per_kg is None:
        cells = np.full(w.shape, dose.flat.value)  # type: ignore[union-attr]
    else:
        per_kg = dose.per_kg.value * w
        if dose.flat is not None and dose.per_kg_max_weight_kg is not None:
            cells = np.where(w <= dose.per_kg_max_weight_kg.value, per_kg, dose.flat.value)
        else:
            cells = per_kg
    if dose.cap is not None:
        cells = np.minimum(cells, dose.cap.value)
    return cells


class Product(BaseModel):
    """A CAR-T product described by its attributes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    display_name: str = ""
    target_antigen: Antigen
    costim: Costim
    dose: DoseSpec
    dose_basis: Literal["car_positive_viable", "total_cells"] = "car_positive_viable"
    memory_fraction: SourcedValue = Field(description="memory/stem-like fraction of CAR+ cells")
    cd4_cd8_ratio: SourcedValue
    viability_pct: SourcedValue
    car_pos_pct: SourcedValue
    vcn_per_car_cell: SourcedValue

    @field_validator("costim", mode="before")
    @classmethod
    def _norm_costim(cls, v: object) -> object:
        if isinstance(v, str) and v.upper().replace("_", "-") in {"4-1BB", "41BB", "CD137"}:
            return "4-1BB"
        return v.upper() if isinstance(v, str) else v

    @field_validator("target_antigen", mode="before")
    @classmethod
    def _norm_antigen(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @field_validator("memory_fraction")
    @classmethod
    def _fraction(cls, v: Sourced) -> Sourced:
        if not 0.0 <= v.value <= 1.0:
            raise ValueError("a fraction between 0 and 1")
        return v

    @field_validator("viability_pct", "car_pos_pct")
    @classmethod
    def _percent(cls, v: Sourced) -> Sourced:
        if not 0.0 < v.value <= 100.0:
            raise ValueError("a percentage above 0 and at most 100")
        return v

    @field_validator("cd4_cd8_ratio", "vcn_per_car_cell")
    @classmethod
    def _positive(cls, v: Sourced) -> Sourced:
        if not v.value > 0:
            raise ValueError("a positive number")
        return v

    def car_cells(self, dose_cells: float) -> float:
        """Viable CAR+ cells in a dose expressed on this product's dose basis."""
        if self.dose_basis == "car_positive_viable":
            return dose_cells
        return dose_cells * self.car_pos_pct.value / 100 * self.viability_pct.value / 100

    def untransduced_cells(self, dose_cells: float) -> float:
        """Viable CAR-negative T cells infused alongside the CAR+ cells."""
        car = self.car_cells(dose_cells)
        return car * (100 - self.car_pos_pct.value) / self.car_pos_pct.value

    def with_(self, **changes: object) -> Product:
        """A copy with attributes replaced (numbers may be bare)."""
        return Product.model_validate({**self.model_dump(), **changes})


def list_products() -> list[str]:
    """Names of the packaged product presets."""
    return sorted(p.stem for p in data_path("products").glob("*.yaml"))


def load_product(name_or_path: str | Path) -> Product:
    """Load a preset by name or a product YAML file by path.

    Raises :class:`InputError` naming the field for an unknown preset or a bad file.
    """
    text = str(name_or_path)
    path = Path(text)
    if text.endswith((".yaml", ".yml")) or path.exists():
        raw = read_user_yaml(text, "product", "product attributes")
        prefix = f"product {path.name}"
    else:
        if text not in list_products():
            raise InputError("product", text, f"one of {', '.join(list_products())} or a .yaml path")
        raw = load_yaml(data_path("products", f"{text}.yaml"))
        prefix = f"product {text}"
    if not isinstance(raw, dict):
        raise InputError(prefix, raw, "a mapping of product attributes")
    raw.setdefault("name", path.stem if path.suffix else text)
    try:
        return Product.model_validate(raw)
    except ValidationError as err:
        raise input_error_from(err, prefix) from None
