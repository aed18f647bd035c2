"""Model families. Each module here defines Flax modules and that family's pure functions, and exports

    validate(config)                raise genjax.errors.UserError on invalid model fields
    make_family(config, dataset)    -> genjax.train.Family (dataset gives example shape and classes)

Adding a family: one module here, one line in FAMILIES, one experiment in experiments/.
"""

import importlib

from genjax.errors import UserError

FAMILIES = {
    "vae": "genjax.models.vae",
    "gan": "genjax.models.gan",
    "cvae": "genjax.models.cvae",
    "ae": "genjax.models.ae",
    "vqvae": "genjax.models.vqvae",
    "vqvae_prior": "genjax.models.vqvae_prior",
}


def get(name: str):
    """The module of model family `name`."""
    if name not in FAMILIES:
        raise UserError(f"unknown model '{name}'; choose one of: {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[name])
