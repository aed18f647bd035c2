"""The flow-matching family: the regression target, the ODE sampler and likelihood against the analytic
Gaussian-to-Gaussian flow, Hutchinson's divergence against the exact one, deterministic sampling, the
8-bit likelihood convention, learnability on ring8 and both experiments end to end."""

import json
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import data
from genjax.data import to_model_batch
from genjax.errors import UserError
from genjax.metrics.modes import mode_coverage
from genjax.models import flow, gan

TINY_UNET = ["--config.channels=(4, 8)", "--config.batch_size=4", "--config.source=embedded"]
TINY_MLP = ["--config.hidden_sizes=(16,)", "--config.batch_size=16"]
TINY_RUN = [
    "--config.num_steps=4",
    "--config.steps_per_call=2",
    "--config.eval_every=4",
    "--config.checkpoint_every=4",
    "--config.num_samples=6",
    "--config.sample_steps=2",
    "--config.likelihood_steps=2",
]


def config_of(experiment, **overrides):
    import importlib

    config = importlib.import_module(f"experiments.{experiment}").get_config()
    config.update(overrides)
    return config


def tiny_family(experiment, **overrides):
    tiny = {"channels": (4, 8), "source": "embedded"} if experiment == "flow_mnist" else {"hidden_sizes": (32, 32)}
    config = config_of(experiment, **{**tiny, **overrides})
    dataset = data.load(config.dataset, "train", source=config.source)
    return flow.make_family(config, dataset), dataset


def gaussian_field(mu, s):
    """The marginal velocity E[x1 - x0 | x_t = x] for x0 ~ N(0, I), x1 ~ N(mu, s^2 I): with a = t s^2 - (1 - t)
    = Cov(x1 - x0, x_t) and var = (1 - t)^2 + t^2 s^2 = Var(x_t), E[x1 - x0 | x] = mu + a (x - t mu) / var."""

    def velocity(x, t):
        t = t[:, None]
        var = (1 - t) ** 2 + t**2 * s**2
        return ((t * s**2 - (1 - t)) * x + (1 - t) * mu) / var

    return velocity


def test_straight_path_target_and_loss_by_hand():
    x0 = jnp.array([[1.0, -2.0], [0.0, 4.0]])
    x1 = jnp.array([[3.0, 2.0], [-1.0, 0.0]])
    t = jnp.array([0.25, 1.0])
    xt, target = flow.straight_path(x0, x1, t)
    np.testing.assert_allclose(xt, [[1.5, -1.0], [-1.0, 0.0]])  # 0.75 * x0 + 0.25 * x1; x1
    np.testing.assert_allclose(target, [[2.0, 4.0], [-1.0, -4.0]])
    np.testing.assert_allclose(flow.flow_matching_loss(lambda x, t: x1 - x0, x0, x1, t), [0.0, 0.0])
    np.testing.assert_allclose(flow.flow_matching_loss(lambda x, t: jnp.zeros_like(x), x0, x1, t), [10.0, 8.5])  # |u|^2 / D


@pytest.mark.parametrize("solver, steps, tolerance", [("heun", 100, 1e-3), ("euler", 400, 5e-2)])
def test_gaussian_to_gaussian_samples_and_log_density(solver, steps, tolerance):
    mu, s = jnp.array([1.5, -0.5]), 0.5
    velocity = gaussian_field(mu, s)
    samples = jax.jit(lambda x0: flow.ode_sample(velocity, x0, steps, solver))(jax.random.normal(jax.random.PRNGKey(0), (4000, 2)))
    np.testing.assert_allclose(samples.mean(0), mu, atol=0.03)
    np.testing.assert_allclose(samples.std(0), [s, s], atol=0.02)
    points = mu + s * jax.random.normal(jax.random.PRNGKey(1), (16, 2)) * 1.5
    expected = jnp.sum(-0.5 * ((points - mu) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi), axis=-1)
    exact = jax.jit(lambda x: flow.ode_log_likelihood(velocity, x, steps, solver))(points)
    np.testing.assert_allclose(exact, expected, atol=tolerance)
    probes = jax.random.rademacher(jax.random.PRNGKey(2), (1, 16, 2), jnp.float32)  # the Jacobian is a multiple of I: exact
    np.testing.assert_allclose(flow.ode_log_likelihood(velocity, points, steps, solver, probes), expected, atol=tolerance)
    warped = jax.jit(lambda x: flow.ode_log_likelihood(velocity, x, steps, solver, power=3.0))(points)  # finer near t = 1, coarser at 0
    np.testing.assert_allclose(warped, expected, atol=4 * tolerance)


def test_time_grid_runs_from_0_to_1_finer_near_the_data():
    np.testing.assert_allclose(flow.time_grid(4), [0.0, 0.25, 0.5, 0.75, 1.0])
    grid = flow.time_grid(10, 3.0)
    assert grid[0] == 0.0 and grid[-1] == 1.0 and np.all(np.diff(np.diff(grid)) < 0)  # steps shrink towards t = 1
    np.testing.assert_allclose(grid[-2], 1 - 0.1**3, rtol=1e-6)

    # backwards integration: the reversed grid undoes the forward one (to the solver's accuracy)
    def field(x, t):  # dx/dt = -t x: x(1) = x(0) exp(-1/2)
        return -x * t

    forward = flow.integrate(field, jnp.ones(3), grid, "heun")
    np.testing.assert_allclose(forward, np.exp(-0.5), rtol=1e-3)
    np.testing.assert_allclose(flow.integrate(field, forward, grid[::-1], "heun"), 1.0, rtol=5e-3)


def test_hutchinson_matches_the_exact_divergence_and_that_the_jacobian_trace():
    net = flow.VelocityMLP(hidden_sizes=(16, 16), time_dim=8)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
    t = jnp.array([0.1, 0.5, 0.9])
    params = net.init(jax.random.PRNGKey(1), x, t)["params"]

    def f(x):
        return net.apply({"params": params}, x, t)

    jacobians = jax.jit(jax.vmap(jax.jacfwd(lambda xi, ti: net.apply({"params": params}, xi[None], ti[None])[0])))(x, t)  # [3, 5, 5]
    value, exact = jax.jit(flow.exact_divergence, static_argnums=0)(f, x)
    np.testing.assert_allclose(value, f(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(exact, jnp.trace(jacobians, axis1=1, axis2=2), rtol=1e-5, atol=1e-6)
    num_probes = 4000
    probes = jax.random.rademacher(jax.random.PRNGKey(3), (num_probes, *x.shape), jnp.float32)
    _, estimate = jax.jit(flow.hutchinson_divergence, static_argnums=0)(f, x, probes)
    # Var(eps^T J eps) = 1/2 sum_{i != j} (J_ij + J_ji)^2 for Rademacher eps: the estimate's standard error
    symmetric = jacobians + jnp.swapaxes(jacobians, 1, 2)
    variance = 0.5 * (jnp.sum(symmetric**2, axis=(1, 2)) - jnp.sum(jnp.diagonal(symmetric, axis1=1, axis2=2) ** 2, axis=1))
    assert float(variance.min()) > 0
    np.testing.assert_array_less(jnp.abs(estimate - exact), 4 * jnp.sqrt(variance / num_probes))


def test_sampling_is_deterministic_given_the_key():
    family, dataset = tiny_family("flow_toy2d", sample_steps=4)
    state = jax.jit(family.init)(jax.random.PRNGKey(0), to_model_batch(dataset.take(np.arange(16))))
    sample = jax.jit(family.sample, static_argnums=2)
    first, again, other = (sample(state, jax.random.PRNGKey(k), 10) for k in (1, 1, 2))
    chex.assert_shape(first, (10, 2))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_image_log_likelihood_of_the_zero_field_is_the_dequantized_gaussian():
    """v = 0 leaves y = 2 (k + u) / 256 - 1 where it is: log p(x) = log N(y; 0, I) + D log 2, then - D log 256 per 8-bit image."""
    family, dataset = tiny_family("flow_mnist", likelihood_steps=3)
    assert family.convolutional and family.capabilities == {"sample", "exact_likelihood"}
    batch = to_model_batch(dataset.take(np.arange(4)))
    state = jax.jit(family.init)(jax.random.PRNGKey(0), batch)
    state = {**state, "ema_params": jax.tree.map(jnp.zeros_like, state["ema_params"])}  # every weight 0: v(x, t) = 0
    key = jax.random.PRNGKey(5)
    log_p = jax.jit(family.log_likelihood)(state, batch, key)
    chex.assert_shape(log_p, (4,))
    chex.assert_tree_all_finite(log_p)
    y = 2.0 * flow.dequantize(batch["image"], jax.random.split(key)[0]) - 1.0
    assert float(jnp.abs(y - (2 * batch["image"] - 1)).max()) <= 2 / 256 + 1e-6  # within one bin of the pixel
    num_dims = 28 * 28
    log_normal = -0.5 * jnp.sum(y.reshape(4, -1) ** 2, axis=1) - 0.5 * num_dims * math.log(2 * math.pi)
    expected = log_normal + num_dims * math.log(2) - num_dims * math.log(256)
    np.testing.assert_allclose(log_p, expected, rtol=1e-5)


def test_training_on_ring8_covers_more_modes_than_at_initialisation():
    family, dataset = tiny_family("flow_toy2d", hidden_sizes=(64, 64), ema_decay=0.0, learning_rate=3e-3, batch_size=256)
    state = jax.jit(family.init)(jax.random.PRNGKey(0), to_model_batch(dataset.take(np.arange(256))))
    points = jnp.asarray(dataset.arrays["point"])

    @jax.jit
    def train(state, key):
        def step(state, key):
            batch = {"point": points[jax.random.randint(key, (256,), 0, len(points))], "label": jnp.zeros(256, jnp.int32)}
            return family.train_step(state, batch, key)[0], None

        return jax.lax.scan(step, state, jax.random.split(key, 1000))[0]

    modes, std = data.mixture_modes("ring8")
    sample = jax.jit(family.sample, static_argnums=2)
    before = mode_coverage(np.asarray(sample(state, jax.random.PRNGKey(2), 2500)), modes, std)
    after = mode_coverage(np.asarray(sample(train(state, jax.random.PRNGKey(1)), jax.random.PRNGKey(2), 2500)), modes, std)
    assert after["modes_captured"] == 8 > before["modes_captured"]
    assert after["high_quality_percent"] > 5 * before["high_quality_percent"]


def test_point_log_likelihood_is_a_normalised_density():
    """The exact-divergence log p(x) of an untrained 2-D flow integrates to 1 over a grid (a wrong sign does not)."""
    family, dataset = tiny_family("flow_toy2d", likelihood_steps=16)
    state = jax.jit(family.init)(jax.random.PRNGKey(0), to_model_batch(dataset.take(np.arange(8))))
    axis = jnp.linspace(-6.0, 6.0, 121)
    grid = jnp.stack(jnp.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    batch = {"point": grid, "label": jnp.zeros(len(grid), jnp.int32)}
    log_p = jax.jit(family.log_likelihood)(state, batch, jax.random.PRNGKey(1))
    chex.assert_shape(log_p, (len(grid),))
    np.testing.assert_allclose(jnp.sum(jnp.exp(log_p)) * 0.1**2, 1.0, atol=0.02)
    np.testing.assert_array_equal(log_p, jax.jit(family.log_likelihood)(state, batch, jax.random.PRNGKey(2)))  # no randomness for points


def test_invalid_fields_are_refused():
    for field, value, message in [
        ("architecture", "resnet", "unknown architecture"),
        ("solver", "rk4", "unknown solver"),
        ("sample_steps", 0, "sample_steps"),
        ("likelihood_steps", -1, "likelihood_steps"),
        ("hutchinson_probes", 0, "hutchinson_probes"),
        ("ema_decay", 1.0, "ema_decay"),
        ("channels", (32, 0), "channels"),
        ("hidden_sizes", (), "hidden_sizes"),
        ("num_res_blocks", 0, "num_res_blocks"),
        ("warmup_steps", -1, "warmup_steps"),
        ("likelihood_time_power", 0.5, "likelihood_time_power"),
    ]:
        with pytest.raises(UserError, match=message):
            flow.validate(config_of("flow_mnist", **{field: value}))
    with pytest.raises(UserError, match="needs images"):
        flow.validate(config_of("flow_toy2d", architecture="unet"))


@pytest.mark.parametrize("experiment, tiny, shape", [("flow_mnist", TINY_UNET, (6, 28, 28, 1)), ("flow_toy2d", TINY_MLP, (6, 2))])
def test_experiment_runs_end_to_end(experiment, tiny, shape, tmp_path, capsys):
    import importlib

    main = importlib.import_module(f"experiments.{experiment}").main
    assert main([f"--workdir={tmp_path / 'run'}", *tiny, *TINY_RUN]) == 0
    with np.load(tmp_path / "run" / "samples.npz") as f:
        assert f["samples"].shape == shape and np.isfinite(f["samples"]).all()
        assert experiment == "flow_toy2d" or 0 <= f["samples"].min() <= f["samples"].max() <= 1
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 4 and set(summary["train"]) == {"loss", "examples_per_s"}
    per_example = {"fm_loss": 0.0, "mode_distance": 0.0, "high_quality": 0.0, "mode_counts": np.zeros(8)}  # named as the GAN's
    assert set(summary["test"]) == (set(gan.summarize_mixture(per_example)) if experiment == "flow_toy2d" else {"fm_loss"})
    assert (tmp_path / "run" / "samples_4.png").is_file()
    capsys.readouterr()
    assert main([f"--workdir={tmp_path / 'bad'}", "--config.solver=rk4"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: unknown solver 'rk4'")
