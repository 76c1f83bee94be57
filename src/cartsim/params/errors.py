"""The one error type user input raises: it names the field, the value and what was expected."""

from __future__ import annotations


class InputError(ValueError):
    """Invalid user input. ``str(err)`` is a single line fit for a CLI message."""

    def __init__(self, field: str, value: object, expected: str):
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(f"{field}: got {value!r}; expected {expected}")
