"""Hyperparameter search spaces, declared by each model family, and the random settings drawn from them.

A family's module declares `search_space(config) -> {field: distribution}` (the config is the experiment's,
so a GAN's space can hold the gradient-penalty weight only when it trains with the penalty). The study
(Lucic et al. 2018, "Are GANs Created Equal?") draws K settings per family from one seed: setting 0 is the
experiment's own defaults, settings 1..K-1 are random draws, so a family's tuned result can never be worse
than its default on the search's own criterion, and every family gets the same number of tries.
"""

import dataclasses
import hashlib
import math

import numpy as np

from genjax.errors import UserError


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """log x uniform on [log low, log high]: for scales such as learning rates and loss weights."""

    low: float
    high: float

    def draw(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def describe(self) -> str:
        return f"log-uniform [{self.low:g}, {self.high:g}]"


@dataclasses.dataclass(frozen=True)
class Uniform:
    """x uniform on [low, high)."""

    low: float
    high: float

    def draw(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def describe(self) -> str:
        return f"uniform [{self.low:g}, {self.high:g})"


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of `values`, each equally likely."""

    values: tuple

    def draw(self, rng: np.random.Generator):
        value = self.values[int(rng.integers(len(self.values)))]
        return value.item() if isinstance(value, np.generic) else value

    def describe(self) -> str:
        return "one of {" + ", ".join(map(str, self.values)) + "}"


def space_of(model, config) -> dict:
    """The search space a model module declares for `config`. Raises UserError when it declares none."""
    if not hasattr(model, "search_space"):
        raise UserError(f"model family '{config.model}' declares no search_space(config) in its module; add one to tune it")
    space = model.search_space(config)
    unknown = [field for field in space if field not in config]
    if unknown:
        raise ValueError(f"the search space of '{config.model}' names {unknown[0]}, which is not a field of its config")
    return space


def continuous_fields(model, config) -> tuple[str, ...]:
    """The fields of `config`'s search space drawn from a continuous range (Uniform, LogUniform): the ones a
    family only computes with, so the engine can take them as traced arguments of its programs. Only fields
    this config has: a stage built on another family's model (the two-stage VAE's first) may lack some.
    None for a family that declares no space."""
    space = model.search_space(config) if hasattr(model, "search_space") else {}
    continuous = (field for field, distribution in space.items() if isinstance(distribution, (Uniform, LogUniform)))
    return tuple(sorted(field for field in continuous if field in config))


def _stream(seed: int, name: str) -> np.random.Generator:
    """A generator for one (seed, family) pair: independent of the other families and of their order."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def draw_settings(space: dict, config, num_settings: int, seed: int, name: str) -> list[dict]:
    """`num_settings` settings {field: value}: the first is `config`'s own values, the rest random draws."""
    defaults = {field: config[field] for field in space}
    rng = _stream(seed, name)
    draws = [{field: distribution.draw(rng) for field, distribution in space.items()} for _ in range(num_settings - 1)]
    return [defaults, *draws]
