"""The one error type user input raises: it names the field, the value and what was expected."""

from __future__ import annotations


#: Longest value representation in a message; a longer one (a whole mapping that failed a
#: cross-field check, say) is cut, so the message stays one readable line.
MAX_VALUE_CHARS = 120


class InputError(ValueError):
    """Invalid user input. ``str(err)`` is a single line fit for a CLI message."""

    def __init__(self, field: str, value: object, expected: str):
        self.field = field
        self.value = value
        self.expected = expected
        shown = repr(value)
        if len(shown) > MAX_VALUE_CHARS:
            shown = shown[: MAX_VALUE_CHARS - 3] + "..."
        super().__init__(f"{field}: got {shown}; expected {expected}")
