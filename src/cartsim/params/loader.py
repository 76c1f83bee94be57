"""Read parameter tables (CSV) and sourced YAML data files."""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Evidence levels, strongest first. The first four follow shared/reference/README.md;
#: ``calibrated`` marks values fitted by cartsim's own scripts, ``assumption`` values
#: chosen by the modellers where no source gives a number.
EVIDENCE_LEVELS = ("verified", "secondary", "derived", "unverified", "calibrated", "assumption")


def data_path(*parts: str) -> Path:
    """Path of a packaged data file under ``cartsim/params/data``."""
    return Path(str(resources.files("cartsim.params").joinpath("data", *parts)))


@dataclass(frozen=True)
class Parameter:
    """One model parameter with its provenance."""

    name: str
    value: float
    unit: str
    description: str
    source: str
    evidence: str
    notes: str = ""


class ParameterTable(Mapping[str, Parameter]):
    """An immutable name -> :class:`Parameter` mapping."""

    def __init__(self, params: Mapping[str, Parameter]):
        self._params = dict(params)

    def __getitem__(self, key: str) -> Parameter:
        try:
            return self._params[key]
        except KeyError:
            raise KeyError(f"unknown parameter {key!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def value(self, key: str) -> float:
        return self[key].value

    def replace(self, values: Mapping[str, float], source: str = "user override",
                evidence: str = "assumption") -> ParameterTable:
        """A copy with some values replaced (unknown names raise ``KeyError``)."""
        new = dict(self._params)
        for name, val in values.items():
            old = self[name]
            new[name] = Parameter(name, float(val), old.unit, old.description,
                                  source, evidence, old.notes)
        return ParameterTable(new)


def _read_table(path: Path) -> ParameterTable:
    params: dict[str, Parameter] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.DictReader(fh), start=2):
            name = row["name"].strip()
            if row["evidence"] not in EVIDENCE_LEVELS:
                raise ValueError(f"{path.name}:{lineno} {name}: evidence {row['evidence']!r} "
                                 f"not one of {EVIDENCE_LEVELS}")
            if not row["source"].strip() or not row["unit"].strip():
                raise ValueError(f"{path.name}:{lineno} {name}: unit and source are required")
            if name in params:
                raise ValueError(f"{path.name}:{lineno}: duplicate parameter {name!r}")
            params[name] = Parameter(name, float(row["value"]), row["unit"], row["description"],
                                     row["source"], row["evidence"], row.get("notes", "") or "")
    return ParameterTable(params)


@functools.cache
def _default_table() -> ParameterTable:
    return _read_table(data_path("parameters.csv"))


def load_parameters(path: str | Path | None = None) -> ParameterTable:
    """Load the parameter table (the packaged default, or a CSV of the same columns)."""
    return _default_table() if path is None else _read_table(Path(path))


class Sourced(BaseModel):
    """A number with its unit and provenance, as written in the YAML data files.

    A bare number is accepted too (user-defined products need not cite anything);
    it is then recorded with evidence ``assumption`` and source ``user input``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    unit: str = ""
    source: str = "user input"
    evidence: str = "assumption"

    @field_validator("evidence")
    @classmethod
    def _known_evidence(cls, v: str) -> str:
        if v not in EVIDENCE_LEVELS:
            raise ValueError(f"must be one of {', '.join(EVIDENCE_LEVELS)}")
        return v

    @classmethod
    def coerce(cls, v: Any) -> Any:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return {"value": float(v)}
        if isinstance(v, str):  # PyYAML reads 1.0e6 (no exponent sign) as a string
            try:
                return {"value": float(v)}
            except ValueError:
                return v
        return v


def load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def read_user_yaml(text: str, field: str, mapping_of: str) -> dict:
    """Read a user's YAML file as a mapping; any problem is an InputError naming ``field``."""
    from cartsim.params.errors import InputError

    path = Path(text)
    if not path.is_file():
        raise InputError(field, text, "an existing .yaml file")
    try:
        raw = load_yaml(path)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise InputError(field, text, f"valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise InputError(field, text, f"a mapping of {mapping_of}")
    return raw


__all__ = ["EVIDENCE_LEVELS", "Field", "Parameter", "ParameterTable", "Sourced",
           "data_path", "load_parameters", "load_yaml", "read_user_yaml"]
