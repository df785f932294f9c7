"""GAN objectives by name (`config.loss`): each owns its losses, schedule and metric keys.

A new objective is one file with an `Objective` subclass plus one line in `OBJECTIVES`,
or, without editing the library, `register(MyObjective)` before training.
"""

from __future__ import annotations

from jaxgan.objectives.base import CriticInputs, Metrics, Objective, accuracy
from jaxgan.objectives.hinge import Hinge
from jaxgan.objectives.nonsaturating import NonSaturating
from jaxgan.objectives.wgan_gp import WGANGP, gradient_penalty

OBJECTIVES: dict[str, type[Objective]] = {
    "nonsaturating": NonSaturating,
    "hinge": Hinge,
    "wgan_gp": WGANGP,
}

__all__ = [
    "OBJECTIVES",
    "WGANGP",
    "CriticInputs",
    "Hinge",
    "Metrics",
    "NonSaturating",
    "Objective",
    "accuracy",
    "build_objective",
    "gradient_penalty",
    "register",
]


def register(objective: type[Objective]) -> type[Objective]:
    """Adds an `Objective` subclass under its `name` (usable as a class decorator)."""
    if not (isinstance(objective, type) and issubclass(objective, Objective)) or not objective.name:
        raise ValueError(f"{objective!r} is not an Objective subclass with a name")
    OBJECTIVES[objective.name] = objective
    return objective


def build_objective(config) -> Objective:
    """The objective `config.loss` names, with its settings from the config."""
    if config.loss not in OBJECTIVES:
        raise ValueError(
            f"config.loss={config.loss!r} is not a known objective; allowed: "
            f"{', '.join(OBJECTIVES)}"
        )
    return OBJECTIVES[config.loss].from_config(config)
