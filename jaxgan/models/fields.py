"""How a model family declares its own config fields: default, check and help, once.

A family module has `FIELDS = {"g_width": Field(64, "G base width", *POSITIVE_INT), ...}`.
The registry builds `config.model` from them (`name` plus the family's fields), and
validation, `--help`, the checkpoint signature and the README's reference read them.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Field:
    """One config field: its default, what it means, its test and what is allowed.

    `shapes`: the field fixes the shapes of saved arrays, so a checkpoint records it and
    refuses to resume under another value (a width does; a dropout rate does not).
    """

    default: Any
    help: str
    check: Callable[[Any], bool]
    allowed: str
    shapes: bool = True


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


POSITIVE_INT = (lambda v: is_int(v) and v > 0, "a positive integer")
NON_NEGATIVE_INT = (lambda v: is_int(v) and v >= 0, "a non-negative integer")
FRACTION = (lambda v: is_real(v) and 0 <= v < 1, "a number in [0, 1)")
BOOLEAN = (lambda v: isinstance(v, bool), "True or False")
NON_NEGATIVE_FINITE = (
    lambda v: is_real(v) and math.isfinite(v) and v >= 0,
    "a finite number >= 0",
)


def one_of(*choices: Any) -> tuple[Callable[[Any], bool], str]:
    """(check, allowed) for a field that takes one of `choices`."""
    return (lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))
