"""Optimizer plumbing shared by the families."""

import optax


def adam(config, learning_rate=None) -> optax.GradientTransformation:
    """Adam (Kingma & Ba 2015) with the config's betas (adam_b1, adam_b2) and step size (or `learning_rate`:
    a schedule, a scaled rate). Both betas may be traced scalars (genjax.train.trials)."""
    step_size = config.learning_rate if learning_rate is None else learning_rate
    return optax.adam(step_size, b1=config.adam_b1, b2=config.adam_b2)


def apply_gradients(tx: optax.GradientTransformation, params, opt_state, grads):
    """One optimizer update: returns (new params, new optimizer state)."""
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
