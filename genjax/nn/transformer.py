"""A small causal transformer over token sequences: an autoregressive prior p(c) = prod_i p(c_i | c_<i).

Pre-LayerNorm decoder blocks (Radford et al. 2019) with learned position embeddings. The input is the
sequence shifted right behind a start token, and attention is masked to earlier positions, so the logits
at position i depend on c_0, ..., c_{i-1} only.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


class CausalTransformer(nn.Module):
    """Tokens int [B, L] in [0, vocab_size) -> logits [B, L, vocab_size] of p(c_i | c_<i)."""

    vocab_size: int
    length: int
    width: int = 64
    layers: int = 2
    heads: int = 4

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        start = jnp.full((tokens.shape[0], 1), self.vocab_size, tokens.dtype)  # an extra token id
        inputs = jnp.concatenate([start, tokens[:, :-1]], axis=1)
        positions = self.param("positions", nn.initializers.normal(0.02), (self.length, self.width))
        x = nn.Embed(self.vocab_size + 1, self.width, embedding_init=nn.initializers.normal(0.02))(inputs) + positions
        mask = nn.make_causal_mask(inputs)
        for _ in range(self.layers):
            h = nn.LayerNorm()(x)
            x = x + nn.MultiHeadDotProductAttention(self.heads)(h, h, mask=mask)
            h = nn.LayerNorm()(x)
            x = x + nn.Dense(self.width)(nn.gelu(nn.Dense(4 * self.width)(h)))
        return nn.Dense(self.vocab_size)(nn.LayerNorm()(x))


def sample_tokens(logits_fn, key: jax.Array, n: int, length: int) -> jax.Array:
    """Draw n sequences int32 [n, length] position by position from logits_fn(tokens) -> [n, length, V].

    Position i is drawn with fold_in(key, i) from the logits at i, which depend on positions < i only;
    the whole sequence is re-run at each step (no cache), cheap for the short code maps used here.
    """

    def draw(i, tokens):
        logits = jax.lax.dynamic_index_in_dim(logits_fn(tokens), i, axis=1, keepdims=False)
        return tokens.at[:, i].set(jax.random.categorical(jax.random.fold_in(key, i), logits).astype(jnp.int32))

    return jax.lax.fori_loop(0, length, draw, jnp.zeros((n, length), jnp.int32))
