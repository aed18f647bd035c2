"""The test-set evaluation of a family: eval_step over every test example, averaged, in one device call."""

import jax
import jax.numpy as jnp
import numpy as np

from genjax.data import to_model_batch
from genjax.train.family import Family
from genjax.train.parallel import gather_batch


def make_evaluate(family: Family, mesh, num_examples: int, batch_size: int):
    """A jitted function: test-set means of eval_step's per-example outputs (padding masked out)."""
    num_batches = -(-num_examples // batch_size)
    positions = np.arange(num_batches * batch_size)
    indices = (positions % num_examples).reshape(num_batches, batch_size).astype(np.int32)
    weights = (positions < num_examples).reshape(num_batches, batch_size).astype(np.float32)

    def evaluate(state, data, key):
        def one_batch(totals, inputs):
            batch_number, batch_indices_, batch_weights = inputs
            batch = to_model_batch(gather_batch(mesh, data, batch_indices_))
            metrics = family.eval_step(state, batch, jax.random.fold_in(key, batch_number))
            weighted = jax.tree.map(lambda v: jnp.tensordot(batch_weights, v, axes=1), metrics)
            return jax.tree.map(jnp.add, totals, weighted), None

        example = {k: jax.ShapeDtypeStruct((batch_size,) + a.shape[1:], a.dtype) for k, a in data.items()}
        shapes = jax.eval_shape(lambda raw: family.eval_step(state, to_model_batch(raw), key), example)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape[1:], jnp.float32), shapes)
        totals, _ = jax.lax.scan(one_batch, zeros, (jnp.arange(num_batches), indices, weights))
        means = jax.tree.map(lambda total: total / num_examples, totals)
        return family.summarize_eval(means) if family.summarize_eval else means

    return jax.jit(evaluate)
