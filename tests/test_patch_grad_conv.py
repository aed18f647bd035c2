"""PatchGradConv equals nn.Conv: outputs, both gradients (inside and outside lax.scan) and the second-order
gradient a gradient penalty takes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

CASES = [(7, 4, 2), (5, 3, 1)]  # (input size, kernel size, stride): odd sizes make SAME padding asymmetric


def test_outputs_and_gradients_equal_flax_conv():
    from genjax.nn.patch_grad_conv import PatchGradConv

    inputs = [jax.random.normal(jax.random.PRNGKey(size), (3, size, size, 2)) for size, _, _ in CASES]
    pairs = [(PatchGradConv(5, (k, k), (s, s)), nn.Conv(5, (k, k), (s, s))) for _, k, s in CASES]

    def grads(module, params, x):
        return jax.grad(lambda p, x: jnp.sum(jnp.sin(module.apply(p, x))), argnums=(0, 1))(params, x)

    def penalty_grads(module, params, x):
        """d/dparams of sum ||d/dx sum sin(conv(x))||^2, as in WGAN-GP."""
        def penalty(params):
            return jnp.sum(jnp.square(jax.grad(lambda x: jnp.sum(jnp.sin(module.apply(params, x))))(x)))
        return jax.grad(penalty)(params)

    @jax.jit
    def compare(inputs):
        results = []
        for (ours, reference), x in zip(pairs, inputs):
            params = reference.init(jax.random.PRNGKey(1), x)
            in_scan = jax.lax.scan(lambda c, _: (c, grads(ours, params, x)), 0, None, length=1)[1]
            results.append((ours.apply(params, x), reference.apply(params, x), grads(ours, params, x),
                            jax.tree.map(lambda a: a[0], in_scan), grads(reference, params, x),
                            penalty_grads(ours, params, x), penalty_grads(reference, params, x)))
        return results

    for out, expected_out, ours, ours_in_scan, expected, second, expected_second in compare(inputs):
        np.testing.assert_allclose(out, expected_out, rtol=1e-5, atol=1e-5)
        for got, want in ((ours, expected), (ours_in_scan, expected), (second, expected_second)):
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), got, want)
