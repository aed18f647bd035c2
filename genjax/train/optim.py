"""Optimizer plumbing shared by the families."""

import optax


def apply_gradients(tx: optax.GradientTransformation, params, opt_state, grads):
    """One optimizer update: returns (new params, new optimizer state)."""
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
