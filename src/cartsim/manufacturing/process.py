"""Process files: what a manufacturing platform does, as data.

A process (``params/data/manufacturing/*.yaml``) states the culture choices (harvest day,
seed, capacity, cytokines, MOI), the logistics around it (shipping, waiting for a slot,
fill/finish, QP release), the release tests with their specifications, the exception
rules for out-of-specification (OOS) products and the re-manufacturing policy. Every
number carries its unit, source and evidence level. The biology shared by all platforms
lives in ``params/data/manufacturing_parameters.csv``.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator, model_validator

from cartsim.params import InputError, ParameterTable, Sourced, data_path, load_parameters, load_yaml, read_user_yaml
from cartsim.patient._schema import SourcedValue, input_error_from
from cartsim.patient.product import DoseSpec

#: Harvest days a user may ask for (the issue's input range).
HARVEST_DAY_RANGE = (1, 28)
#: Release tests every process must perform (the issue's list).
REQUIRED_TESTS = ("sterility", "mycoplasma", "endotoxin", "vcn", "identity_purity", "viability", "potency")

TestName = Literal["sterility", "gram_stain", "mycoplasma", "endotoxin", "vcn", "rcl", "identity_purity",
                   "viability", "potency", "cell_count"]


class Duration(Sourced):
    """A duration in days with its between-batch variability.

    ``value`` is the median for ``fixed`` and ``lognormal`` and the mean for
    ``exponential`` (a wait for the next free slot).
    """

    dist: Literal["fixed", "lognormal", "exponential"] = "fixed"
    log_sd: float = 0.0

    @model_validator(mode="after")
    def _check(self) -> Duration:
        if not (math.isfinite(self.value) and self.value >= 0):
            raise ValueError("a duration must be a finite number of days >= 0")
        if self.unit and self.unit not in ("day", "days", "d"):
            raise ValueError(f"unit must be day (got {self.unit!r})")
        if not (math.isfinite(self.log_sd) and self.log_sd >= 0):
            raise ValueError("log_sd must be >= 0")
        if self.log_sd and self.dist != "lognormal":
            raise ValueError("log_sd only applies to dist: lognormal")
        return self


DurationValue = Annotated[Duration, BeforeValidator(Duration.coerce)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Culture(_Strict):
    """Closed-system culture: CD4/CD8 selection, TransAct activation, transduction, expansion."""

    harvest_day: SourcedValue
    seed_cells: SourcedValue
    capacity_cells: SourcedValue
    cytokines: Literal["il2", "il7_il15"]
    moi: SourcedValue
    transduction_day: SourcedValue

    @field_validator("harvest_day", "transduction_day")
    @classmethod
    def _day(cls, v: Sourced, info) -> Sourced:
        lo, hi = HARVEST_DAY_RANGE
        lo = 0 if info.field_name == "transduction_day" else lo
        if not lo <= v.value <= hi:
            raise ValueError(f"a day within {lo}-{hi}")
        return v

    @field_validator("seed_cells", "capacity_cells", "moi")
    @classmethod
    def _positive(cls, v: Sourced) -> Sourced:
        if not (math.isfinite(v.value) and v.value > 0):
            raise ValueError("a number > 0")
        return v

    @model_validator(mode="after")
    def _capacity(self) -> Culture:
        if not self.capacity_cells.value > self.seed_cells.value:
            raise ValueError("capacity_cells must exceed seed_cells")
        return self


class Logistics(_Strict):
    """The calendar around the culture (days)."""

    apheresis_to_start: DurationValue
    ship_to_plant: DurationValue
    slot_wait: DurationValue
    fill_finish: DurationValue
    qp_release: DurationValue
    release_to_delivery: DurationValue


class ReleaseTest(_Strict):
    """One release test: when it is sampled and how long its result takes."""

    name: TestName
    method: str
    time_to_result_days: SourcedValue
    sample: Literal["final_product", "in_process"] = "final_product"
    sample_days_before_harvest: SourcedValue | None = None

    @model_validator(mode="after")
    def _sample(self) -> ReleaseTest:
        if not (math.isfinite(self.time_to_result_days.value) and self.time_to_result_days.value >= 0):
            raise ValueError("time_to_result_days must be >= 0")
        if (self.sample == "in_process") != (self.sample_days_before_harvest is not None):
            raise ValueError("sample_days_before_harvest is required for (and only for) in_process samples")
        if self.sample_days_before_harvest is not None and self.sample_days_before_harvest.value < 0:
            raise ValueError("sample_days_before_harvest must be >= 0")
        return self


class Specifications(_Strict):
    """Release specifications (a product outside any of them is out of specification)."""

    dose_per_kg_min: SourcedValue
    car_pos_pct_min: SourcedValue
    cd3_pct_min: SourcedValue
    viability_pct_min: SourcedValue
    vcn_copies_per_cell_max: SourcedValue
    potency_surviving_pct_max: SourcedValue


class ExceptionRules(_Strict):
    """When an OOS product may still be infused (below these floors the batch has failed)."""

    allow_oos_infusion: bool
    review: DurationValue
    dose_per_kg_min: SourcedValue
    car_pos_pct_min: SourcedValue
    cd3_pct_min: SourcedValue
    viability_pct_min: SourcedValue
    potency_waivable: bool = True


class Remanufacture(_Strict):
    """What happens after a failed batch."""

    enabled: bool
    max_attempts: int
    restart_from_backup: DurationValue
    restart_with_reapheresis: DurationValue

    @field_validator("max_attempts")
    @classmethod
    def _attempts(cls, v: int) -> int:
        if not 1 <= v <= 5:
            raise ValueError("max_attempts must be within 1-5")
        return v


class ProcessSpec(_Strict):
    """A manufacturing platform and its process choices."""

    name: str
    display_name: str = ""
    platform: Literal["poc", "central"]
    base_product: str
    product_form: Literal["fresh", "cryopreserved"]
    indication: str = "lbcl"
    dose_target: DoseSpec
    culture: Culture
    logistics: Logistics
    release_tests: list[ReleaseTest]
    specifications: Specifications
    exceptions: ExceptionRules
    remanufacture: Remanufacture

    @model_validator(mode="after")
    def _tests(self) -> ProcessSpec:
        names = [t.name for t in self.release_tests]
        missing = [t for t in REQUIRED_TESTS if t not in names]
        if missing:
            raise ValueError(f"release_tests lacks {', '.join(missing)}")
        if len(set(names)) != len(names):
            raise ValueError("release_tests lists a test twice")
        return self

    def with_(self, **changes: object) -> ProcessSpec:
        """A copy with top-level fields replaced; ``culture``/``logistics`` take dicts that update."""
        raw = self.model_dump()
        for key, val in changes.items():
            if isinstance(val, dict) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **val}
            else:
                raw[key] = val
        try:
            return ProcessSpec.model_validate(raw)
        except ValidationError as err:
            raise _input_error(err, f"process {self.name}") from None


def _input_error(err: ValidationError, prefix: str) -> InputError:
    """One-line :class:`InputError` naming the field; a nested mapping shows only its value."""
    e = input_error_from(err, prefix)
    value = e.value
    if isinstance(value, dict):
        value = value.get("value", "{...}")
    elif isinstance(value, list):
        value = "[...]"
    expected = e.expected.removeprefix("value error, ")
    return InputError(e.field, value, expected)


def list_processes() -> list[str]:
    """Names of the packaged process presets (``poc``, ``central``)."""
    return sorted(p.stem for p in data_path("manufacturing").glob("*.yaml"))


@functools.cache
def _preset(name: str) -> ProcessSpec:
    return ProcessSpec.model_validate(load_yaml(data_path("manufacturing", f"{name}.yaml")))


def load_process(name_or_path: str | Path | ProcessSpec = "poc") -> ProcessSpec:
    """A process preset by name (``poc``, ``central``) or a process YAML file by path.

    Raises :class:`InputError` naming the field for an unknown preset or a malformed file.
    """
    if isinstance(name_or_path, ProcessSpec):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    if not text.endswith((".yaml", ".yml")) and not path.exists():
        if text not in list_processes():
            raise InputError("platform", text, f"one of {', '.join(list_processes())} or a process .yaml path")
        return _preset(text)
    raw = read_user_yaml(text, "process", "process fields (see params/data/manufacturing/poc.yaml)")
    raw.setdefault("name", path.stem)
    try:
        return ProcessSpec.model_validate(raw)
    except ValidationError as err:
        raise _input_error(err, f"process {path.name}") from None


@functools.cache
def manufacturing_parameters() -> ParameterTable:
    """The biology shared by all platforms (``manufacturing_parameters.csv``)."""
    return load_parameters(data_path("manufacturing_parameters.csv"))


@functools.cache
def manufacturing_targets() -> ParameterTable:
    """Published figures the model is calibrated to or checked against (``manufacturing_targets.csv``)."""
    return load_parameters(data_path("manufacturing_targets.csv"))
