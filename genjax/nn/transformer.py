"""A small causal transformer over token sequences: an autoregressive prior p(c) = prod_i p(c_i | c_<i).

Pre-LayerNorm decoder blocks (Radford et al. 2019) with learned position embeddings. The input is the
sequence shifted right behind a start token, and attention is masked to earlier positions, so the logits
at position i depend on c_0, ..., c_{i-1} only.

Sampling (`sample_tokens`) runs the same parameters one position per call with a key/value cache (Flax's
decode mode): each token is computed once, instead of re-running the whole sequence at every position,
which made drawing 1,000 MNIST code maps (49 positions) take 22 s on 2 CPU cores.

The blocks compute in `dtype` (genjax.nn.precision; the key/value cache is in that dtype too); the logits
come out float32, so the likelihood's log-softmax is float32.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn.precision import to_float32


class CausalTransformer(nn.Module):
    """Tokens int [B, L] in [0, vocab_size) -> logits [B, L, vocab_size] of p(c_i | c_<i).

    With decode=True (same parameters) each call after `init` takes the token at the previous position,
    int [B, 1] (ignored at position 0, where the start token goes in), and returns the logits [B, 1, V] of
    the next position; the position and the attention keys and values live in the 'cache' collection.
    """

    vocab_size: int
    length: int
    width: int = 64
    layers: int = 2
    heads: int = 4
    decode: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        # float32 parameter, cast like the layers cast theirs: the residual stream is in the compute dtype
        positions = self.param("positions", nn.initializers.normal(0.02), (self.length, self.width)).astype(self.dtype)
        embed = nn.Embed(self.vocab_size + 1, self.width, embedding_init=nn.initializers.normal(0.02), dtype=self.dtype)
        start = self.vocab_size  # an extra token id
        if self.decode:
            position = self.variable("cache", "position", lambda: jnp.zeros((), jnp.int32))
        if self.decode and not self.is_initializing():  # init only shapes the cache, over whole sequences
            inputs = jnp.where(position.value == 0, start, tokens)
            x = embed(inputs) + jax.lax.dynamic_slice_in_dim(positions, position.value, 1)
            position.value += 1
            mask = None  # attention's own cache mask: the positions filled so far
        else:
            inputs = jnp.concatenate([jnp.full((tokens.shape[0], 1), start, tokens.dtype), tokens[:, :-1]], axis=1)
            x = embed(inputs) + positions
            mask = nn.make_causal_mask(inputs)
        for _ in range(self.layers):
            h = nn.LayerNorm(dtype=self.dtype)(x)
            x = x + nn.MultiHeadDotProductAttention(self.heads, dtype=self.dtype, decode=self.decode)(h, h, mask=mask)
            h = nn.LayerNorm(dtype=self.dtype)(x)
            x = x + nn.Dense(self.width, dtype=self.dtype)(nn.gelu(nn.Dense(4 * self.width, dtype=self.dtype)(h)))
        return to_float32(nn.Dense(self.vocab_size, dtype=self.dtype)(nn.LayerNorm(dtype=self.dtype)(x)))


def sample_tokens(model: CausalTransformer, params, key: jax.Array, n: int) -> jax.Array:
    """Draw n sequences int32 [n, model.length] position by position from the model with these parameters.

    Position i is drawn with fold_in(key, i) from p(c_i | c_<i); the sequence so far lives in the model's
    key/value cache, so each step computes one new position.
    """
    decoder = model.clone(decode=True)
    shapes = jax.eval_shape(decoder.init, jax.random.PRNGKey(0), jnp.zeros((n, model.length), jnp.int32))["cache"]
    cache = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), shapes)

    def draw(carry, i):
        cache, previous = carry
        logits, updates = decoder.apply({"params": params, "cache": cache}, previous[:, None], mutable=["cache"])
        token = jax.random.categorical(jax.random.fold_in(key, i), logits[:, 0]).astype(jnp.int32)
        return (updates["cache"], token), token

    _, tokens = jax.lax.scan(draw, (cache, jnp.zeros((n,), jnp.int32)), jnp.arange(model.length))
    return tokens.T
