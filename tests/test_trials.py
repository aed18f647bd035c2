"""Vectorized trials: each trial of a vmapped group equals its setting trained alone; a diverging trial is
recorded at its first non-finite loss and leaves the others bitwise as they were."""

import chex
import jax
import numpy as np
import pytest

from genjax import experiment
from genjax.data import to_model_batch
from genjax.train.trials import TrialGroup, group_key
from tests.conftest import tiny_vae_config

# the bias-before-BatchNorm parameters and the running means they feed: the DCGAN's (D's second conv, G's first
# dense) and InfoGAN's Q head
PRE_NORM_BIASES = (
    "['Conv_1']['bias']",
    "['Dense_0']['bias']",
    "['batch_stats']['BatchNorm_0']['mean']",
    "['q_hidden']['bias']",
    "['batch_stats']['q_norm']['mean']",
)


def _leaves(tree):
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _alone(config, setting, train, num_steps):
    """The setting trained by the plain engine's step function, one step at a time, with the same keys."""
    from genjax.data import batch_indices
    from genjax.train.loop import Keys

    config = config.copy_and_resolve_references()
    config.update(setting)
    family = experiment.validate(config).make_family(config, train)
    keys = Keys.from_seed(config.seed)
    state = jax.jit(family.init)(keys.init, to_model_batch(train.take(np.arange(config.batch_size))))
    step_fn = jax.jit(family.train_step)
    for step, row in enumerate(batch_indices(config.seed, train.num_examples, config.batch_size, 0, num_steps)):
        state, _ = step_fn(state, to_model_batch(train.take(row)), jax.random.fold_in(keys.train, step))
    return state


def _assert_equal_to_alone(trial, alone, setting, steps, label="", g_scale=1.0):
    """A group's trial state against its setting trained alone, leaf by leaf (`g_scale`: G's learning rate as a
    multiple of the setting's, InfoGAN's g_learning_rate_scale)."""
    for (path, got), want in zip(_leaves(trial), jax.tree.leaves(alone), strict=True):
        # A bias that feeds a BatchNorm has a zero gradient up to rounding, which Adam normalizes into steps
        # of up to lr in either direction, independently in the two runs: such biases, and the running means
        # that see them, agree to 2 * steps * lr (steps * lr was exceeded by 3% on an AMD EPYC). Everything
        # else agrees to float tolerance.
        loose = ("generator" in path or "discriminator" in path) and any(name in path for name in PRE_NORM_BIASES)
        atol = 2 * steps * setting["learning_rate"] * (g_scale if "generator" in path else 1.0) if loose else 2e-5
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=atol, err_msg=f"{label} {path}")


def _gan_config():
    from experiments import dcgan_mnist

    config = dcgan_mnist.get_config()
    config.update(
        dict(
            conv_channels=(4, 8),
            latent_dim=8,
            batch_size=16,
            n_critic=5,
            source="embedded",
            adversarial_loss="non_saturating",
            discriminator_norm="batch",
        )
    )
    return config


def _mlp_gan_config():
    from experiments import gan_mnist

    config = gan_mnist.get_config()
    config.update(dict(g_hidden_sizes=(32,), d_hidden_sizes=(32,), latent_dim=8, batch_size=16, n_critic=5, source="embedded"))
    return config


@pytest.mark.parametrize(
    "make_config, settings, steps",
    [
        (
            lambda: tiny_vae_config(batch_size=16),
            [{"learning_rate": 1e-3, "beta": 1.0}, {"learning_rate": 3e-4, "beta": 4.0}, {"learning_rate": 3e-3, "beta": 0.5}],
            12,
        ),
        (_gan_config, [{"learning_rate": 2e-4, "adam_b1": 0.5}, {"learning_rate": 1e-3, "adam_b1": 0.0}], 7),
        (_mlp_gan_config, [{"learning_rate": 2e-4, "adam_b1": 0.5}, {"learning_rate": 1e-3, "adam_b1": 0.0}], 7),
    ],
    ids=["mlp_vae", "dcgan_batchnorm_n_critic_5", "mlp_gan_n_critic_5"],
)
@pytest.mark.parametrize("vectorize", ["vmap", "unroll"])
def test_each_trial_equals_its_setting_trained_alone(mnist, make_config, settings, steps, vectorize):
    config, train = make_config(), mnist[0]
    group = TrialGroup(config, settings, train, vectorize)
    trained, metrics = group.train(group.init(), 0, steps)
    assert jax.tree.leaves(metrics)[0].shape == (steps, len(settings))
    np.testing.assert_array_equal(trained["diverged_at"], 0)
    for index, setting in enumerate(settings):
        _assert_equal_to_alone(group.trial_state(trained, index), _alone(config, setting, train, steps), setting, steps)
    first, second = (group.trial_state(trained, i) for i in (0, 1))
    assert any(not np.allclose(a, b, atol=1e-3) for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)))  # settings differ


@pytest.mark.parametrize("make_config, steps", [(lambda: tiny_vae_config(batch_size=16), 12), (_gan_config, 5)], ids=["mlp_vae", "dcgan"])
@pytest.mark.parametrize("vectorize", ["vmap", "unroll"])
def test_each_trial_of_a_group_of_seeds_equals_that_seed_trained_alone(mnist, make_config, steps, vectorize):
    config, train = make_config(), mnist[0]
    setting, seeds = {"learning_rate": 1e-3}, [3, 0, 7]
    group = TrialGroup(config, [setting] * 3, train, vectorize, seeds=seeds)
    trained, _ = group.train(group.init(), 0, steps)
    states = [group.trial_state(trained, index) for index in range(3)]
    for seed, state in zip(seeds, states, strict=True):
        alone = _alone(config, {**setting, "seed": seed}, train, steps)
        for (path, got), want in zip(_leaves(state), jax.tree.leaves(alone), strict=True):
            loose = ("generator" in path or "discriminator" in path) and any(name in path for name in PRE_NORM_BIASES)  # as above
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=2 * steps * 1e-3 if loose else 2e-5, err_msg=path)
    assert any(not np.allclose(a, b, atol=1e-3) for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])))  # seeds differ


def test_a_vmapped_group_skips_the_generator_update_by_a_branch(mnist):
    """With n_critic 5 the MLP GAN's generator turn comes from the run's step, one value for the whole group, so
    under jax.vmap it stays a lax.cond. From each trial's own step count the predicate was batched and vmap made the
    cond a select, computing the generator's update at every step (the group trained 0.83x as fast as alone)."""
    group = TrialGroup(_mlp_gan_config(), [{"learning_rate": 2e-4}, {"learning_rate": 1e-3}], mnist[0], "vmap")
    steps, indices = np.arange(1, dtype=np.int32), group._indices(0, 1)
    jaxpr = jax.make_jaxpr(group._one_step)(group.init(), steps[0], indices[0], group.train_keys)
    primitives = {equation.primitive.name for equation in jaxpr.jaxpr.eqns}
    assert "cond" in primitives


def test_a_group_of_seeds_is_refused_for_a_toy_mixture_and_needs_one_seed_per_trial(mnist):
    from experiments import gan_toy2d
    from genjax.experiment import load_data

    config = gan_toy2d.get_config()
    with pytest.raises(ValueError, match="drawn from the seed"):
        TrialGroup(config, [{"learning_rate": 1e-3}] * 2, load_data(config)[0], seeds=[0, 1])
    with pytest.raises(ValueError, match="one seed per trial"):
        TrialGroup(tiny_vae_config(), [{"learning_rate": 1e-3}] * 2, mnist[0], seeds=[0])


@pytest.mark.parametrize("scan", [True, False], ids=["scanned_chunks", "one_call_per_step"])
def test_a_diverging_trial_is_recorded_at_its_first_non_finite_loss_frozen_and_the_others_are_bitwise_unaffected(mnist, scan):
    config, train = tiny_vae_config(batch_size=16), mnist[0]
    sane = [{"learning_rate": 1e-3}, {"learning_rate": 2e-3}, {"learning_rate": 5e-4}]
    poisoned = [sane[0], {"learning_rate": 1e30}, sane[2]]  # the middle trial blows up within a few steps
    runs = {}
    for name, settings in (("sane", sane), ("poisoned", poisoned)):
        group = TrialGroup(config, settings, train)
        group.scan = scan  # both execution paths (convolutional families take the second on CPU)
        state = group.init()
        history, losses = [jax.device_get(state)], []  # history[c]: the state before chunk c
        for first in range(0, 12, 4):
            state, metrics = group.train(state, first, 4)
            history.append(jax.device_get(state))
            losses.append(np.asarray(metrics["loss"]))
        runs[name] = (group, history, np.concatenate(losses))  # [12 steps, 3 trials]
    group, history, losses = runs["poisoned"]
    diverged_at = int(history[-1]["diverged_at"][1])
    assert history[-1]["diverged_at"][[0, 2]].tolist() == [0, 0] and np.isfinite(losses[:, [0, 2]]).all()
    assert diverged_at == 1 + int(np.argmax(~np.isfinite(losses[:, 1])))  # the first step whose loss is not finite
    assert all(h["diverged_at"][1] in (0, diverged_at) for h in history)  # recorded once, never moved
    chunk = (diverged_at - 1) // 4  # the call of `train` in which it diverged
    frozen = group.trial_state(history[chunk], 1)  # its state at that call's start
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(frozen))
    for later in history[chunk + 1 :]:  # put back at the end of that call, unchanged by every later one
        chex.assert_trees_all_equal(group.trial_state(later, 1), frozen)
    sane_group, sane_history, _ = runs["sane"]
    for index in (0, 2):
        chex.assert_trees_all_equal(group.trial_state(history[-1], index), sane_group.trial_state(sane_history[-1], index))


def test_settings_that_change_shapes_form_separate_groups(mnist):
    traced = ("learning_rate", "beta")
    settings = [
        {"learning_rate": 1e-3, "latent_dim": 4},
        {"learning_rate": 2e-3, "latent_dim": 8},
        {"learning_rate": 5e-4, "latent_dim": 4},
    ]
    keys = [group_key(s, traced) for s in settings]
    assert keys[0] == keys[2] != keys[1]
    with pytest.raises(ValueError, match="same fields"):
        TrialGroup(tiny_vae_config(), [{"learning_rate": 1e-3}, {"beta": 2.0}], mnist[0])
    with pytest.raises(Exception, match="learning_rate must be a positive number"):
        TrialGroup(tiny_vae_config(), [{"learning_rate": 1e-3}, {"learning_rate": -1.0}], mnist[0])


def _dot_batch_dims(jaxpr) -> list:
    """The lhs batch dimensions of every dot_general in `jaxpr` and the jaxprs it calls."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(eqn.params["dimension_numbers"][1][0])
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += _dot_batch_dims(inner)
    return found


@pytest.mark.parametrize("broadcast", [True, False], ids=["broadcast_on_cpu", "folded"])
def test_on_cpu_a_shared_batch_reaches_every_trial_so_no_matmul_folds_the_trial_axis(mnist, monkeypatch, broadcast):
    # Unbatched, the shared batch meets the stacked weights [T, d, h] in a matmul [B, d] @ [d, T h] that JAX folds
    # the trial axis into (no batch dimension), at the price of transposing the weights every step on CPU.
    from genjax.train import policy

    monkeypatch.setattr(policy, "broadcast_shared_batch", lambda platform: broadcast and platform == "cpu")
    settings = [{"learning_rate": 1e-3, "beta": 1.0}, {"learning_rate": 3e-4, "beta": 4.0}]
    group = TrialGroup(tiny_vae_config(batch_size=16), settings, mnist[0], "vmap")
    assert group.broadcast_batch is broadcast
    state, step = group.init(), np.int32(0)
    jaxpr = jax.make_jaxpr(group._one_step)(state, step, group._indices(0, 1)[0], group.train_keys)
    batch_dims = _dot_batch_dims(jaxpr.jaxpr)
    assert batch_dims, "the step has no matmul"
    folded = [dims for dims in batch_dims if not dims]
    assert (not folded) if broadcast else folded


# layer sizes small enough to compile every family in seconds (only the fields a family's config has)
TINY_SIZES = dict(
    conv_channels=(4, 8),
    channels=(4, 8),
    hidden_sizes=(16,),
    g_hidden_sizes=(16,),
    d_hidden_sizes=(16,),
    latent_dim=8,
    q_hidden=8,
    batch_size=8,
)


def _single_stage_families():
    from experiments.study import CONTENDERS

    return {name: contender for name, contender in CONTENDERS.items() if len(contender.stages) == 1}


@pytest.mark.parametrize("name", list(_single_stage_families()))
def test_every_study_family_trains_as_a_vmapped_group_each_trial_as_it_alone(mnist, name):
    """On an accelerator the study trains every one-stage family's settings in vmapped groups (vectorize 'auto'),
    which on CPU only the MLP AE does: two settings of each family's own search space (its defaults and a draw,
    in the fields a group traces), 3 steps, each trial equal to its setting trained alone."""
    from genjax import models
    from genjax.search import continuous_fields, draw_settings, space_of

    contender = _single_stage_families()[name]
    config = contender.config()
    config.update({field: value for field, value in TINY_SIZES.items() if field in config})
    config.source = "embedded"
    model = models.get(config.model)
    traced = continuous_fields(model, config)
    settings = [{f: s[f] for f in traced} for s in draw_settings(space_of(model, config), config, 2, seed=0, name=name)]
    group = TrialGroup(config, settings, mnist[0], "vmap")
    trained, _ = group.train(group.init(), 0, 3)
    np.testing.assert_array_equal(trained["diverged_at"], 0)
    for index, setting in enumerate(settings):
        alone = _alone(config, setting, mnist[0], 3)
        label, g_scale = f"{name} setting {index}", config.get("g_learning_rate_scale", 1.0)
        _assert_equal_to_alone(group.trial_state(trained, index), alone, setting, 3, label, g_scale)
