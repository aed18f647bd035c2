"""Model families, found by name: the module `genjax.models.<name>` is the family `<name>`.

A family module defines Flax modules and that family's pure functions, and exports

    validate(config)                raise genjax.errors.UserError on invalid model fields
    make_family(config, dataset)    -> genjax.train.Family (dataset gives example shape and classes)
    FIELDS                          {config field: one-line help} of the fields it reads

Adding a family is adding its module here (and an experiment in experiments/): nothing lists the families,
so nothing else changes.
"""

import importlib
import importlib.util
import pkgutil

from genjax.errors import UserError


def names() -> tuple[str, ...]:
    """Every family: the modules of this package that export make_family."""
    import genjax.models as package

    modules = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))
    return tuple(name for name in modules if hasattr(importlib.import_module(f"genjax.models.{name}"), "make_family"))


def get(name: str):
    """The module of model family `name`."""
    if name.isidentifier() and not name.startswith("_") and importlib.util.find_spec(f"genjax.models.{name}") is not None:
        module = importlib.import_module(f"genjax.models.{name}")
        if hasattr(module, "make_family"):
            return module
    raise UserError(f"unknown model '{name}'; choose one of: {', '.join(names())}")
