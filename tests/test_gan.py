"""The GAN family: network shapes, one train step of each experiment's configuration, n_critic,
BatchNorm and spectral-norm statistics, mixture scores, config refusals and learnability on ring8."""

import functools
import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import data
from genjax.data import to_model_batch
from genjax.errors import UserError
from genjax.models import gan, gan_nets

TINY = dict(
    latent_dim=8,
    g_hidden_sizes=(16,),
    d_hidden_sizes=(16,),
    conv_channels=(4, 8),
    batch_size=8,
    num_steps=4,
    steps_per_call=2,
    eval_every=4,
    checkpoint_every=4,
    num_samples=25,
)


def tiny_gan_config(experiment: str, **overrides):
    """An experiment's config with tiny networks and a handful of steps."""
    config = importlib.import_module(f"experiments.{experiment}").get_config()
    config.update(TINY)
    if config.dataset == "mnist":
        config.source = "embedded"
    config.update(overrides)
    return config


@functools.cache
def dataset(name: str):
    return data.load(name, "train", source="embedded" if name == "mnist" else "auto")


# Unit tests use MLP configurations, which compile in about a second: the machinery (state, steps,
# n_critic, normalization state) is shared by both architectures. The conv networks are checked by
# test_network_shapes here and end to end in test_gan_experiments.py.
CONFIGS = {  # name -> (experiment, overrides, data shape of 25 samples, train metrics)
    "batch_norm": ("gan_mnist", {"discriminator_norm": "batch", "d_hidden_sizes": (16, 16)}, (25, 28, 28, 1), {"d_loss", "g_loss"}),
    "wgan_gp_spectral_conditional": (
        "gan_mnist",
        {"adversarial_loss": "wasserstein_gp", "discriminator_norm": "spectral", "n_critic": 2, "conditional": True},
        (20, 28, 28, 1),
        {"d_loss", "g_loss", "gradient_penalty"},
    ),
}


def config_of(name: str):
    experiment, overrides = CONFIGS[name][:2]
    return tiny_gan_config(experiment, **overrides)


@functools.cache
def three_steps(name: str):
    """(family, [state before and after each of 3 train steps], [metrics], eval outputs, samples of n=25).

    The step is compiled once: chex.assert_max_traces fails on any retrace across steps."""
    config = config_of(name)
    family = gan.make_family(config, dataset(config.dataset))
    batch = to_model_batch(dataset(config.dataset).take(np.arange(config.batch_size)))
    states = [jax.jit(family.init)(jax.random.PRNGKey(0), batch)]
    chex.clear_trace_counter()  # the counter knows a step by its source, which every family shares
    step = jax.jit(chex.assert_max_traces(family.train_step, n=1))
    metrics = []
    for i in range(3):
        state, step_metrics = step(states[-1], batch, jax.random.PRNGKey(i))
        states.append(state)
        metrics.append(step_metrics)
    per_example = jax.jit(family.eval_step)(states[-1], batch, jax.random.PRNGKey(5))
    samples = jax.jit(family.sample, static_argnums=2)(states[-1], jax.random.PRNGKey(6), 25)
    return family, states, metrics, per_example, samples


def changed(before, after) -> bool:
    """Whether any array of a pytree differs."""
    return not all(jax.tree.leaves(jax.tree.map(np.array_equal, before, after)))


def test_network_shapes_of_variants_the_experiments_leave_out():
    """Transposed-convolution upsampling and conditional conv networks (the experiments cover the rest)."""
    image, points = jnp.zeros((3, 28, 28, 1)), jnp.zeros((3, 2))
    z, labels = jnp.zeros((3, 5)), jnp.array([0, 4, 9])
    cases = [  # (module, inputs, output shape, variable collections)
        (gan_nets.ConvGenerator((28, 28, 1), (8, 4), "transpose"), (z, None), (3, 28, 28, 1), {"params", "batch_stats"}),
        (gan_nets.ConvGenerator((28, 28, 1), (8, 4), num_classes=10), (z, labels), (3, 28, 28, 1), {"params", "batch_stats"}),
        (gan_nets.ConvDiscriminator((4, 8), "spectral", num_classes=10), (image, labels), (3,), {"params", gan_nets.SPECTRAL_COLLECTION}),
        (gan_nets.MLPDiscriminator((8, 4), "batch", num_classes=10), (points, labels), (3,), {"params", "batch_stats"}),
    ]

    @jax.jit
    def apply_all(key):
        return [(variables := module.init(key, *inputs), module.apply(variables, *inputs)) for module, inputs, _, _ in cases]

    outputs = apply_all(jax.random.PRNGKey(0))
    for (variables, out), (_, _, shape, collections) in zip(outputs, cases):
        chex.assert_shape(out, shape)
        assert set(variables) == collections
    assert float(jnp.abs(outputs[0][1]).max()) <= 1.0  # tanh output


@pytest.mark.parametrize("name", CONFIGS)
def test_family_steps_shapes_and_no_recompiles(name):
    _, _, sample_shape, train_metrics = CONFIGS[name]
    family, states, metrics, per_example, samples = three_steps(name)
    for state in states[1:]:
        chex.assert_trees_all_equal_shapes_and_dtypes(states[0], state)
    assert int(states[-1]["step"]) == 3
    assert set(metrics[-1]) == train_metrics
    chex.assert_rank(list(metrics[-1].values()), 0)
    chex.assert_tree_all_finite(metrics)
    assert {"d_real", "d_fake", "d_loss", "g_loss"} <= set(per_example)
    for name_, value in per_example.items():
        assert value.shape[0] == 8, name_
    np.testing.assert_allclose(per_example["d_loss"], per_example["d_real"] + per_example["d_fake"], rtol=1e-6)
    chex.assert_shape(samples, sample_shape)
    if len(sample_shape) == 4:
        assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0
    assert family.conditional == (sample_shape[0] == 20)


def test_the_generator_steps_every_n_critic_steps_and_the_critic_every_step():
    _, states, _, _, _ = three_steps("wgan_gp_spectral_conditional")  # n_critic 2
    generator = [s["generator"]["params"] for s in states]
    discriminator = [s["discriminator"]["params"] for s in states]
    assert [changed(generator[i], generator[i + 1]) for i in range(3)] == [False, True, False]
    assert all(changed(discriminator[i], discriminator[i + 1]) for i in range(3))


def test_conv_n_critic_on_cpu_keeps_the_generator_update_one_step_in_n_exactly_as_the_branch_does(monkeypatch):
    """Conv networks on CPU compute the generator update every step and keep it on generator turns (a cond
    branch runs convolutions slowly on XLA:CPU); accelerators skip it with lax.cond. Both give one state."""
    config = tiny_gan_config("wgan_gp_mnist", n_critic=2)
    batch = to_model_batch(dataset("mnist").take(np.arange(config.batch_size)))

    def three_states():
        family = gan.make_family(config, dataset("mnist"))
        states = [jax.jit(family.init)(jax.random.PRNGKey(0), batch)]
        step = jax.jit(family.train_step)
        for i in range(3):
            states.append(step(states[-1], batch, jax.random.PRNGKey(i))[0])
        return states

    by_select = three_states()
    generator = [s["generator"]["params"] for s in by_select]
    assert [changed(generator[i], generator[i + 1]) for i in range(3)] == [False, True, False]
    assert all(changed(by_select[i]["discriminator"]["params"], by_select[i + 1]["discriminator"]["params"]) for i in range(3))
    monkeypatch.setattr(jax.lax, "platform_dependent", lambda *args, cpu, default: default(*args))  # the accelerators' code
    by_branch = three_states()
    # Adam turns a gradient that is zero up to rounding (a bias before BatchNorm) into a step of up to about
    # lr / 5 either way, so the generator's parameters agree to a fraction of lr; Adam's state holds the
    # gradients themselves (b1 = 0: mu is the last gradient) and agrees tightly.
    for before, after in zip(by_select, by_branch):
        chex.assert_trees_all_close(before["generator"]["params"], after["generator"]["params"], atol=0.5 * config.learning_rate)
        for part in ("g_opt_state", "discriminator", "d_opt_state", "step"):
            chex.assert_trees_all_close(before[part], after[part], rtol=1e-4, atol=1e-6)


def test_batch_norm_statistics_change_in_training_only(mnist):
    _, states, _, _, _ = three_steps("batch_norm")
    assert changed(states[0]["discriminator"]["batch_stats"], states[1]["discriminator"]["batch_stats"])
    _, discriminator = gan.build_networks(config_of("batch_norm"), mnist[0])
    images = to_model_batch(mnist[1].take(np.arange(8)))["image"]

    @jax.jit
    def scores(variables, images):
        return [[gan.run(discriminator, variables, x, None, train=train) for x in (images, images[:4])] for train in (False, True)]

    variables = states[-1]["discriminator"]
    ((full, same), (half, _)), ((full_train, updated), (half_train, _)) = scores(variables, images)
    np.testing.assert_allclose(full[:4], half, rtol=1e-5)  # running averages: examples scored independently
    chex.assert_trees_all_equal(same, variables)
    assert not np.allclose(full_train[:4], half_train, rtol=1e-3)  # batch statistics: a score depends on the batch
    assert changed(variables["batch_stats"], updated["batch_stats"])


def test_spectral_norm_power_iteration_converges_to_the_top_singular_value():
    mlp = gan_nets.MLPDiscriminator(hidden_sizes=(6, 5), norm="spectral")
    conv = gan_nets.ConvDiscriminator(channels=(3,), norm="spectral")
    inputs = {mlp: jnp.ones((2, 7)), conv: jnp.ones((2, 4, 4, 2))}

    @jax.jit
    def iterate():
        results = []
        for module, x in inputs.items():
            variables = module.init(jax.random.PRNGKey(0), x)
            after_one = gan.run(module, variables, x, None, train=True)[1]
            trained = jax.lax.fori_loop(0, 50, lambda i, v: gan.run(module, v, x, None, train=True)[1], variables)
            inference = gan.run(module, trained, x, None, train=False)[1]
            results.append((variables, after_one, trained, inference))
        return results

    for variables, after_one, trained, inference in iterate():
        sigmas = {
            name.split("/")[0]: value
            for layer in trained[gan_nets.SPECTRAL_COLLECTION].values()
            for name, value in layer.items()
            if name.endswith("/sigma")
        }
        assert set(sigmas) == set(variables["params"])  # every layer is normalized
        for layer, sigma in sigmas.items():
            kernel = np.asarray(variables["params"][layer]["kernel"])
            top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
            np.testing.assert_allclose(sigma, top, rtol=1e-3)
        assert changed(variables, after_one)
        chex.assert_trees_all_equal(inference, trained)  # inference leaves the power iteration alone


def test_spectral_norm_vectors_advance_in_train_step():
    _, states, _, _, _ = three_steps("wgan_gp_spectral_conditional")
    assert set(states[0]["discriminator"]) == {"params", gan_nets.SPECTRAL_COLLECTION}
    assert changed(states[0]["discriminator"][gan_nets.SPECTRAL_COLLECTION], states[1]["discriminator"][gan_nets.SPECTRAL_COLLECTION])


def test_conditional_samples_come_in_class_rows():
    np.testing.assert_array_equal(gan.class_rows(3, 7), [0, 0, 1, 1, 2, 2])
    _, states, _, _, _ = three_steps("wgan_gp_spectral_conditional")
    generator, _ = gan.build_networks(config_of("wgan_gp_spectral_conditional"), dataset("mnist"))
    z = jnp.ones((2, TINY["latent_dim"]))
    images = jax.jit(lambda v: gan.run(generator, v, z, jnp.array([0, 1]), train=False)[0])(states[-1]["generator"])
    assert not np.allclose(images[0], images[1])  # the same z with another label gives another image


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mixture_scores_count_modes_and_high_quality_samples(name):
    means, std = data.mixture_modes(name)
    points = jnp.concatenate([jnp.asarray(means[:3]), jnp.asarray(means[:1]) + 2.5 * std, jnp.asarray(means[:1]) + 1.0])
    scores = gan.mixture_scores(points, means, std)
    far = np.min(np.linalg.norm(means - (means[0] + 1.0), axis=1))
    np.testing.assert_allclose(scores["mode_distance"], [0, 0, 0, 2.5 * std * np.sqrt(2), far], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(scores["high_quality"], [1, 1, 1, 0, 0])  # 3.5 std away is not within 3 std
    summary = gan.summarize_mixture(jax.tree.map(lambda v: jnp.mean(v, axis=0), scores))
    assert float(summary["modes_populated"]) == 3 and "mode_counts" not in summary


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"adversarial_loss": "wasserstein_gp", "discriminator_norm": "batch"}, "gradient penalty needs a critic"),
        ({"architecture": "conv", "dataset": "ring8"}, "architecture 'conv' needs images"),
        ({"adversarial_loss": "minimax"}, "unknown adversarial_loss"),
        ({"discriminator_norm": "layer"}, "unknown discriminator_norm"),
        ({"n_critic": 0}, "n_critic must be a positive integer"),
        ({"d_hidden_sizes": ()}, "d_hidden_sizes must be positive widths"),
    ],
)
def test_invalid_gan_fields_are_refused(overrides, message):
    with pytest.raises(UserError, match=message):
        gan.validate(tiny_gan_config("gan_mnist", **overrides))


# a small MLP GAN that reaches the ring8 modes in a few hundred steps (test_a_few_hundred_steps_...)
RING8 = dict(latent_dim=2, g_hidden_sizes=(64, 64), d_hidden_sizes=(64, 64), learning_rate=3e-3, adam_b1=0.0, adam_b2=0.9, batch_size=128)


def train_on_ring8(family, key, num_steps: int = 400):
    """(initial state, state after num_steps steps on batches of 128 ring8 points drawn with replacement)."""
    points = jnp.asarray(dataset("ring8").arrays["point"])

    @jax.jit
    def train(key):
        def one_step(state, step):
            indices = jax.random.randint(jax.random.fold_in(key, step), (128,), 0, len(points))
            batch = {"point": points[indices], "label": jnp.zeros(128, jnp.int32)}
            return family.train_step(state, batch, jax.random.fold_in(key, -step - 1))[0], None

        state = family.init(key, {"point": points[:128], "label": jnp.zeros(128, jnp.int32)})
        return state, jax.lax.scan(one_step, state, jnp.arange(num_steps))[0]

    return train(key)


def test_a_few_hundred_steps_bring_ring8_samples_to_the_modes():
    """400 steps of a small MLP GAN divide the mean distance from a sample to the nearest of the 8 modes by
    more than 2 (over seeds 0-7 the factor was 3.3 to 3.8 for this config)."""
    family = gan.make_family(tiny_gan_config("gan_toy2d", **RING8), dataset("ring8"))
    means, _ = data.mixture_modes("ring8")

    def mean_distance(state, key):
        samples = family.sample(state, key, 1000)
        return jnp.mean(jnp.min(jnp.linalg.norm(samples[:, None] - means[None], axis=-1), axis=1))

    initial, trained = train_on_ring8(family, jax.random.PRNGKey(0))
    before, after = mean_distance(initial, jax.random.PRNGKey(0)), mean_distance(trained, jax.random.PRNGKey(0))
    assert float(after) < float(before) / 2, (float(before), float(after))


def test_the_generator_average_follows_its_recursion_and_makes_the_samples():
    """ema_decay d: after each step avg <- d avg + (1 - d) theta (Yazici et al. 2019), from avg = theta at
    init; samples come from the average, and ema_decay 0 keeps no average in the state."""
    config = tiny_gan_config("gan_toy2d", ema_decay=0.9)
    train = dataset("ring8")
    family = gan.make_family(config, train)
    batch = to_model_batch(train.take(np.arange(config.batch_size)))
    state = jax.jit(family.init)(jax.random.PRNGKey(0), batch)
    expected = state["generator"]["params"]
    step = jax.jit(family.train_step)
    for i in range(3):
        state, _ = step(state, batch, jax.random.PRNGKey(i))
        expected = jax.tree.map(lambda avg, theta: 0.9 * avg + 0.1 * theta, expected, state["generator"]["params"])
    chex.assert_trees_all_close(state["g_average"], expected, rtol=1e-5, atol=1e-7)
    assert changed(state["g_average"], state["generator"]["params"])
    samples = family.sample(state, jax.random.PRNGKey(5), 16)
    plain = gan.make_family(tiny_gan_config("gan_toy2d"), train)  # the same G without an average
    raw = plain.sample(state, jax.random.PRNGKey(5), 16)  # its own parameters
    averaged = plain.sample({**state, "generator": {"params": state["g_average"]}}, jax.random.PRNGKey(5), 16)
    np.testing.assert_allclose(samples, averaged, rtol=1e-6)
    assert not np.allclose(samples, raw)
    assert "g_average" not in jax.eval_shape(plain.init, jax.random.PRNGKey(0), batch)
    with pytest.raises(UserError, match=r"ema_decay must be in \[0, 1\)"):
        gan.validate(tiny_gan_config("gan_toy2d", ema_decay=1.0))
