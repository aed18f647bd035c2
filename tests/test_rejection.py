"""Discriminator rejection sampling (genjax.models.rejection): exact on a closed form, honest when it runs
out of rounds, and in the GAN family a sampler that moves ring8 samples onto the modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import data
from genjax.models import gan
from genjax.models.rejection import rejection_sample
from tests.test_gan import RING8, dataset, tiny_gan_config, train_on_ring8


def _wide_normal(key, m):
    return 2.0 * jax.random.normal(key, (m, 1))  # the proposal N(0, 2^2)


def _to_standard(x):
    # log N(x; 0, 1) - log N(x; 0, 4) = log 2 - 3 x^2 / 8, largest (log 2) at 0: M = 2, acceptance 1 / M
    return np.log(2.0) - 3.0 * x[:, 0] ** 2 / 8.0


def test_rejection_sampling_draws_the_target_of_the_log_ratio():
    draws, acceptance = jax.jit(rejection_sample, static_argnums=(0, 1, 3))(_wide_normal, _to_standard, jax.random.PRNGKey(0), 20000)
    draws = np.asarray(draws[:, 0])
    assert abs(draws.mean()) < 0.03 and abs(draws.std() - 1.0) < 0.02, (draws.mean(), draws.std())  # N(0, 1), not N(0, 4)
    assert abs(float(acceptance) - 0.5) < 0.02, float(acceptance)
    assert np.mean(np.abs(draws) > 3) < 0.005  # N(0, 4) puts 13% there, N(0, 1) 0.27%


def test_rejection_sampling_out_of_rounds_keeps_proposals_and_reports_the_rate():
    def rare(x):  # accepts about 1 draw in 10^4 of the proposal
        return jnp.where(x[:, 0] > 7.4, 0.0, -jnp.inf)

    draws, acceptance = rejection_sample(_wide_normal, rare, jax.random.PRNGKey(1), 100, burn_in=100_000, max_rounds=3)
    assert draws.shape == (100, 1) and np.isfinite(np.asarray(draws)).all()
    assert float(acceptance) < 0.01  # the caller can see that the draws are mostly unfiltered


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"sampler": "rejection"}, "unknown sampler 'rejection'"),
        ({"sampler": "drs", "adversarial_loss": "hinge"}, "sampler 'drs' reads D's logit"),
        ({"sampler": "drs", "pack": 2}, "sampler 'drs' reads D's logit"),
    ],
)
def test_drs_needs_a_logistic_unpacked_discriminator(overrides, message):
    from genjax.errors import UserError

    with pytest.raises(UserError, match=message):
        gan.validate(tiny_gan_config("gan_toy2d", **overrides))


def test_drs_puts_more_ring8_samples_near_the_modes_than_the_generator():
    """The state of 400 steps of a small ring8 GAN, sampled by G alone and through DRS: DRS's samples lie
    closer to the modes (the paths between modes, which D scores low, are rejected)."""
    config = tiny_gan_config("gan_toy2d", **RING8)
    train = dataset("ring8")
    plain = gan.make_family(config, train)
    drs_config = config.copy_and_resolve_references()
    drs_config.sampler = "drs"
    drs = gan.make_family(drs_config, train)
    means, _ = data.mixture_modes("ring8")

    def distances(family, state):
        samples = jax.jit(family.sample, static_argnums=2)(state, jax.random.PRNGKey(7), 2000)
        assert samples.shape == (2000, 2)
        return np.min(np.linalg.norm(np.asarray(samples)[:, None] - means[None], axis=-1), axis=1)

    _, state = train_on_ring8(plain, jax.random.PRNGKey(0))
    generator, rejected = distances(plain, state), distances(drs, state)
    # measured: mean distance 0.187 -> 0.154, within 0.1 of a mode 27% -> 36% (after 1,000 steps 0.104 -> 0.067, 70% -> 84%)
    assert rejected.mean() < 0.9 * generator.mean(), (generator.mean(), rejected.mean())
    assert np.mean(rejected < 0.1) > np.mean(generator < 0.1) + 0.05
