"""Generator/discriminator pairs, by model family name, and each family's config fields.

A family is one module with

    FIELDS = {"g_width": Field(64, "G base width", *POSITIVE_INT), ...}   # its own knobs
    def build(model, *, image_shape, num_classes, dtype, population=False) -> (G, D)

plus one line in `MODELS` (or `register(name, module)` from outside the library).
`config.model` is a ConfigDict: `name` and that family's fields (`model_config`).
Every module is called as `module(inputs, labels=None, *, train)`; unconditional ones
ignore the labels. `population=True` asks for layers that `jax.vmap` well (a
population's members); families may ignore it.
"""

from __future__ import annotations

from typing import Any, Protocol

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from jaxgan.models import dcgan, mlp, resnet
from jaxgan.models.fields import Field


class Family(Protocol):
    """What a model family module provides."""

    FIELDS: dict[str, Field]

    def build(
        self, model: Any, *, image_shape: Any, num_classes: int, dtype: Any, population: bool
    ) -> tuple[nn.Module, nn.Module]: ...


MODELS: dict[str, Family] = {
    "dcgan": dcgan,
    "mlp": mlp,
    "resnet": resnet,
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Family fields that were top-level config fields before `config.model` was nested.
FORMERLY_FLAT = ("g_width", "d_width", "dropout_rate", "spectral_norm")


def register(name: str, family: Family) -> None:
    """Adds a family from outside the library: `register("tiny", my_module)`."""
    if not isinstance(getattr(family, "FIELDS", None), dict) or not callable(
        getattr(family, "build", None)
    ):
        raise ValueError(f"model family {name!r} needs a FIELDS dict and a build function")
    MODELS[name] = family


def family_of(name: str) -> Family:
    """The family registered as `name`; a ValueError lists the known ones."""
    if name not in MODELS:
        raise ValueError(f"config.model.name={name!r} is not a known model; allowed: "
                         + ", ".join(MODELS))  # fmt: skip
    return MODELS[name]


def model_config(name: str, **values: Any) -> ml_collections.ConfigDict:
    """`config.model` for family `name`: its fields' defaults, then `values`."""
    fields = family_of(name).FIELDS
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"model {name!r} has no field {', '.join(unknown)}; its fields: {', '.join(fields)}"
        )
    model = ml_collections.ConfigDict({"name": name})
    for field, spec in fields.items():
        model[field] = values.get(field, spec.default)
    return model


def model_problems(model: Any) -> list[str]:
    """What is wrong with `config.model`: each problem names the field and what is allowed."""
    name = model.get("name") if hasattr(model, "get") else None
    if not isinstance(name, str) or name not in MODELS:
        return [f"config.model.name={name!r} is invalid; allowed: one of {', '.join(MODELS)}"]
    fields = MODELS[name].FIELDS
    problems = [
        f"config.model.{field} is not a field of model {name!r}; its fields: "
        f"{', '.join(fields)} (a config file of that family sets them)"
        for field in model
        if field != "name" and field not in fields
    ]
    for field, spec in fields.items():
        if field in model and not spec.check(model[field]):
            problems.append(
                f"config.model.{field}={model[field]!r} is invalid; allowed: {spec.allowed}"
            )
    return problems


def resolved(model: Any) -> dict[str, Any]:
    """`config.model`'s fields as a dict, the family's defaults filling any left out."""
    fields = family_of(model["name"]).FIELDS
    return {field: model.get(field, spec.default) for field, spec in fields.items()}


def build_models(
    model: Any,
    *,
    image_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 0,
    dtype: str = "float32",
    population: bool = False,
) -> tuple[nn.Module, nn.Module]:
    """Returns (generator, discriminator) of the family `model["name"]`.

    Args:
      model: `config.model`: a mapping with `name` and that family's fields.
      image_shape: (H, W, C) of the images.
      num_classes: > 1 for a class-conditional pair; 0 or 1 for an unconditional one.
      dtype: compute dtype, 'float32' or 'bfloat16'; parameters stay float32.
      population: the pair will be vmapped over a population's members.
    """
    problems = model_problems(model)
    if problems:
        raise ValueError("; ".join(problems))
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; allowed: {', '.join(DTYPES)}")
    return MODELS[model["name"]].build(
        resolved(model),
        image_shape=tuple(image_shape),
        num_classes=num_classes,
        dtype=DTYPES[dtype],
        population=population,
    )


def build_from_config(config: Any, image_shape, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """`build_models` with the config's fields; conditional only if `config.conditional`."""
    return build_models(
        config.model,
        image_shape=image_shape,
        num_classes=num_classes if config.get("conditional", False) else 0,
        dtype=config.get("dtype", "float32"),
        population=bool(config.get("population", 0)),
    )


def signature_fields(model: Any) -> dict[str, Any]:
    """The family's fields that fix parameter shapes, with their values in `model`."""
    values = resolved(model)
    fields = MODELS[model["name"]].FIELDS
    return {field: values[field] for field, spec in fields.items() if spec.shapes}


def describe(model: Any) -> list[tuple[str, Any, str]]:
    """(`model.FIELD`, value, help) for `--help` and the README's reference."""
    fields = MODELS[model["name"]].FIELDS
    rows = [("model.name", model["name"], "model family: " + ", ".join(MODELS))]
    rows += [(f"model.{f}", model.get(f, spec.default), spec.help) for f, spec in fields.items()]
    return rows


def upgrade(values: dict[str, Any]) -> dict[str, Any]:
    """A config dict written before `config.model` was nested (a workdir's `config.json`),
    in today's form: the family's fields move under `model`; others it had are dropped.

    Returns a new dict; the file it came from is never rewritten.
    """
    if not isinstance(values.get("model"), str):
        return values
    upgraded = {k: v for k, v in values.items() if k not in FORMERLY_FLAT}
    name = values["model"]
    fields = family_of(name).FIELDS
    upgraded["model"] = {"name": name, **{f: values[f] for f in fields if f in values}}
    return upgraded
