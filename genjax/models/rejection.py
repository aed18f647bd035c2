"""Discriminator rejection sampling (Azadi et al. 2019, "Discriminator Rejection Sampling", ICLR).

A GAN's discriminator trained with the non-saturating (logistic) loss is, at its optimum,
D*(x) = p_data(x) / (p_data(x) + p_g(x)), so its logit is the log density ratio

    logit D*(x) = log p_data(x) - log p_g(x).

Rejection sampling with the generator as proposal then draws from the data distribution: accept a draw
x ~ p_g with probability p_data(x) / (M p_g(x)) = exp(logit(x) - log M), where M bounds the ratio. As in the
paper, log M is the largest logit over a burn-in of `burn_in` draws (10,000 there), raised whenever a later
draw exceeds it. With a learned D the result is only as exact as D: it removes the samples D is sure are
not data (the paths between modes that a continuous generator cannot avoid), it cannot add modes G misses.
The paper's shifted acceptance function (its gamma), which trades exactness for a higher acceptance rate,
is left out: the exact form keeps the samples' distribution the one D believes in.

`rejection_sample` is written for `jax.jit` with a static n: rounds of n proposals in a `lax.while_loop`,
each round's accepted draws written after the ones before, until n are accepted or `max_rounds` rounds
have run; any place still empty then (an acceptance rate under 1 / max_rounds) keeps a proposal of the last
round, unfiltered, and `acceptance` reports the rate so that a caller can see it happened.
"""

import jax
import jax.numpy as jnp

BURN_IN = 10_000  # the paper's
MAX_ROUNDS = 200


def rejection_sample(generate, log_ratio, key: jax.Array, n: int, burn_in: int = BURN_IN, max_rounds: int = MAX_ROUNDS):
    """n draws of generate(key, m) [m, ...] accepted with probability exp(log_ratio(x) - log M), and the
    acceptance rate (accepted / proposed). log_ratio(x [m, ...]) -> [m]: the discriminator's logit."""
    burn_key, loop_key = jax.random.split(key)
    log_bound = jnp.max(log_ratio(generate(burn_key, burn_in)))
    example = jax.eval_shape(lambda key: generate(key, n), burn_key)
    empty = jnp.zeros(example.shape, example.dtype)

    def round_of(carry):
        out, accepted, log_bound, key, rounds, _ = carry
        key, proposal_key, uniform_key = jax.random.split(key, 3)
        x = generate(proposal_key, n)
        scores = log_ratio(x)
        log_bound = jnp.maximum(log_bound, jnp.max(scores))
        accept = jnp.log(jax.random.uniform(uniform_key, (n,))) < scores - log_bound
        slot = accepted + jnp.cumsum(accept) - 1  # where each accepted draw goes: after those accepted before
        out = out.at[jnp.where(accept, slot, n)].set(x, mode="drop")  # slot n and beyond: dropped
        return out, accepted + jnp.sum(accept), log_bound, key, rounds + 1, x

    def unfilled(carry):
        _, accepted, _, _, rounds, _ = carry
        return (accepted < n) & (rounds < max_rounds)

    start = (empty, jnp.int32(0), log_bound, loop_key, jnp.int32(0), empty)
    out, accepted, _, _, rounds, last = jax.lax.while_loop(unfilled, round_of, start)
    filled = (jnp.arange(n) < accepted).reshape((n,) + (1,) * (len(example.shape) - 1))
    return jnp.where(filled, out, last), accepted / (rounds * n)
