"""Shared pydantic helpers: sourced numbers and one-line error messages."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, ValidationError

from cartsim.params import InputError, Sourced

#: A sourced number that may also be written as a bare number.
SourcedValue = Annotated[Sourced, BeforeValidator(Sourced.coerce)]


def input_error_from(err: ValidationError, prefix: str = "") -> InputError:
    """Turn the first pydantic error into an :class:`InputError` naming the field path."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    field = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "input")
    value = first.get("input")
    msg = first["msg"]
    if first["type"] == "missing":
        return InputError(field, None, "a value (field is required)")
    if first["type"] == "extra_forbidden":
        return InputError(field, value, "no such field (unknown key)")
    if isinstance(value, dict) and "value" in value:  # a sourced number: show the number
        value = value["value"]
    msg = msg.removeprefix("Value error, ")
    return InputError(field, value, msg[0].lower() + msg[1:] if msg else "a valid value")
