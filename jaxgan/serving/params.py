"""Query parameters of the HTTP endpoints: parsed strictly, rejected with what is allowed.

Every endpoint's parameters are checked here, at the boundary, before anything runs: a
value that is not exactly a decimal integer in range, a format that is not listed, an
unknown or repeated parameter is a `ParameterError`, which the app answers with HTTP 422
and a JSON body naming the parameter and what it allows.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

MAX_IMAGES = 256  # /generate?n= upper bound: one largest bucket.
MIN_STEPS, MAX_STEPS = 2, 64
MAX_SEED = 2**31 - 1  # Seeds are int32 in `jaxgan.evaluation.generation.image_latents`.
FORMATS = ("png", "npz")
# ASCII digits only: Python's int() would also take '١٢', ' 12', '1_2' and '+12'.
_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)
# More significant digits than any bound has: out of range, and never handed to int(),
# which refuses strings of over 4300 digits.
_MAX_DIGITS = 20
_SHOWN_CHARACTERS = 40


def _shown(text: str) -> str:
    """`text`, or its start and its length when it is long: a client's text echoed back."""
    if len(text) <= _SHOWN_CHARACTERS:
        return text
    return f"{text[:_SHOWN_CHARACTERS]}... ({len(text)} characters)"


class ParameterError(ValueError):
    """A query parameter the endpoint does not accept; `parameter` and `allowed` say which.

    A long name (an unknown parameter's) or value is shown cut to its start and length.
    """

    def __init__(self, parameter: str, value: str | None, problem: str, allowed: str):
        self.parameter = _shown(parameter)
        self.allowed = allowed
        given = self.parameter if value is None else f"{self.parameter}={_shown(value)!r}"
        super().__init__(f"{given} {problem}; allowed: {allowed}")


@dataclasses.dataclass(frozen=True)
class GenerateParams:
    n: int
    seed: int
    label: int | None
    format: str


@dataclasses.dataclass(frozen=True)
class InterpolateParams:
    seed_a: int
    seed_b: int
    steps: int
    label: int | None
    format: str


def _single_values(items: Sequence[tuple[str, str]], names: Sequence[str]) -> dict[str, str]:
    """The query as {name: value}; unknown or repeated names are a ParameterError."""
    values: dict[str, str] = {}
    for name, value in items:
        if name not in names:
            raise ParameterError(
                name, None, "is not a parameter of this endpoint", ", ".join(names)
            )
        if name in values:
            raise ParameterError(name, None, "is given more than once", "one value per parameter")
        values[name] = value
    return values


def _integer(values: dict[str, str], name: str, low: int, high: int, default: int | None):
    if name not in values:
        return default
    text = values[name]
    allowed = f"an integer from {low} to {high}"
    if not _INTEGER.fullmatch(text):
        raise ParameterError(name, text, "is not an integer", allowed)
    if len(text.lstrip("-").lstrip("0")) > _MAX_DIGITS or not low <= int(text) <= high:
        raise ParameterError(name, text, "is out of range", allowed)
    return int(text)


def _label(values: dict[str, str], num_classes: int, class_names: Sequence[str]) -> int | None:
    """The class of a conditional model, None when absent; any label is refused otherwise."""
    if "label" not in values:
        return None
    text = values["label"]
    if not num_classes:
        raise ParameterError(
            "label", text, "was given, but this model is unconditional", "no label (leave it out)"
        )
    names = ", ".join(f"{index}={name}" for index, name in enumerate(class_names))
    allowed = f"a class index ({names}), or no label for every class in turn"
    if not _INTEGER.fullmatch(text):
        raise ParameterError("label", text, "is not a class index", allowed)
    if len(text.lstrip("-").lstrip("0")) > _MAX_DIGITS or not 0 <= int(text) < num_classes:
        raise ParameterError("label", text, "is out of range", allowed)
    return int(text)


def _format(values: dict[str, str]) -> str:
    text = values.get("format", "png")
    if text not in FORMATS:
        raise ParameterError("format", text, "is not a known format", " or ".join(FORMATS))
    return text


def parse_generate(
    items: Sequence[tuple[str, str]], num_classes: int, class_names: Sequence[str]
) -> GenerateParams:
    """`/generate`'s query: n (default 16), seed (0), label (conditional only), format (png)."""
    values = _single_values(items, ("n", "seed", "label", "format"))
    return GenerateParams(
        n=_integer(values, "n", 1, MAX_IMAGES, 16),
        seed=_integer(values, "seed", 0, MAX_SEED, 0),
        label=_label(values, num_classes, class_names),
        format=_format(values),
    )


def parse_interpolate(
    items: Sequence[tuple[str, str]], num_classes: int, class_names: Sequence[str]
) -> InterpolateParams:
    """`/interpolate`'s query: seed_a (0), seed_b (1), steps (8), label, format (png)."""
    values = _single_values(items, ("seed_a", "seed_b", "steps", "label", "format"))
    return InterpolateParams(
        seed_a=_integer(values, "seed_a", 0, MAX_SEED, 0),
        seed_b=_integer(values, "seed_b", 0, MAX_SEED, 1),
        steps=_integer(values, "steps", MIN_STEPS, MAX_STEPS, 8),
        label=_label(values, num_classes, class_names),
        format=_format(values),
    )
