"""InfoGAN: the mutual-information bounds against hand computations, Q's gradient reaching D's body and G, the
code/class agreement metrics against hand computations and scikit-learn, the family's steps and tables, its
refusals, and the experiment end to end through genjax.evaluate and the study's family list."""

import functools
import json
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from experiments import infogan_mnist
from genjax import data, evaluate, experiment
from genjax.data import to_model_batch
from genjax.errors import UserError
from genjax.metrics import classifier as metric_classifier
from genjax.metrics.codes import code_class_agreement
from genjax.models import infogan
from genjax.models.gan_nets import ConvGenerator

TINY = dict(
    latent_dim=4,
    conv_channels=(2, 4),
    q_hidden=8,
    batch_size=8,
    num_steps=2,
    steps_per_call=2,
    eval_every=2,
    checkpoint_every=2,
    num_samples=20,
    source="embedded",
)
LOG_2PI = math.log(2 * math.pi)


def tiny_config(**overrides):
    config = infogan_mnist.get_config()
    config.update({**TINY, **overrides})
    return config


def test_the_information_bounds_equal_a_hand_computation_on_two_examples():
    logits = jnp.array([[0.0, math.log(3.0)], [math.log(3.0), 0.0]])  # Q(c_cat | x) = (1/4, 3/4) and (3/4, 1/4)
    means = jnp.array([[0.5, 0.2], [0.0, -0.3]])
    log_stds = jnp.array([[math.log(2.0), 0.0], [0.0, math.log(0.5)]])
    categories, continuous = jnp.array([1, 1]), jnp.array([[0.1, 0.2], [-1.0, 0.2]])
    categorical, continuous_bound = infogan.information_bounds((logits, means, log_stds), categories, continuous)
    # log Q(c_cat | x) + log K with K = 2: log(3/4) + log 2 = log(3/2), and log(1/4) + log 2 = -log 2
    np.testing.assert_allclose(categorical, [math.log(1.5), -math.log(2.0)], rtol=1e-6)
    # sum_j [-(c_j - mu_j)^2 / (2 sigma_j^2) - log sigma_j - log(2 pi) / 2 + log 2]
    first = (-0.5 * (0.4 / 2.0) ** 2 - math.log(2.0)) + (-0.5 * 0.0) - LOG_2PI + 2 * math.log(2.0)
    second = (-0.5 * 1.0**2) + (-0.5 * (0.5 / 0.5) ** 2 - math.log(0.5)) - LOG_2PI + 2 * math.log(2.0)
    np.testing.assert_allclose(continuous_bound, [first, second], rtol=1e-6)


def test_a_perfect_q_attains_log_k_for_the_categorical_code():
    logits = jnp.array([[40.0, 0.0, 0.0], [0.0, 0.0, 40.0]])
    categorical, _ = infogan.information_bounds((logits, jnp.zeros((2, 0)), jnp.zeros((2, 0))), jnp.array([0, 2]), jnp.zeros((2, 0)))
    np.testing.assert_allclose(categorical, [math.log(3.0)] * 2, rtol=1e-6)


def tiny_networks():
    generator = ConvGenerator((28, 28, 1), (4, 2))
    discriminator = infogan.InfoDiscriminator((2, 4), "batch", num_categories=3, num_continuous=2, q_hidden=8)
    z, codes = jax.random.normal(jax.random.PRNGKey(1), (6, 5)), infogan.draw_codes(jax.random.PRNGKey(2), 6, 3, 2)
    g_input = infogan.generator_input(z, *codes, 3)
    g_variables = generator.init(jax.random.PRNGKey(3), g_input)
    d_variables = discriminator.init(jax.random.PRNGKey(4), jnp.zeros((6, 28, 28, 1)))
    return generator, discriminator, g_variables, d_variables, g_input, codes


def test_q_gradient_reaches_the_body_it_shares_with_d_and_the_generator_but_not_d_score():
    generator, discriminator, g_variables, d_variables, g_input, codes = tiny_networks()

    def information_term(g_params, d_params):
        fake = generator.apply({**g_variables, "params": g_params}, g_input, train=True, mutable=["batch_stats"])[0]
        (_, q), _ = discriminator.apply({**d_variables, "params": d_params}, fake, train=True, mutable=["batch_stats"])
        categorical, continuous = infogan.information_bounds(q, *codes)
        return -(jnp.mean(categorical) + 0.1 * jnp.mean(continuous))

    g_grads, d_grads = jax.jit(jax.grad(information_term, argnums=(0, 1)))(g_variables["params"], d_variables["params"])
    norms = {name: float(optax_norm(layer)) for name, layer in d_grads.items()}
    assert set(norms) == {"Conv_0", "Conv_1", "BatchNorm_0", "Dense_0", "q_hidden", "q_norm", "q_out"}
    assert all(norms[name] > 0 for name in ("Conv_0", "Conv_1", "BatchNorm_0", "q_hidden", "q_out")), norms
    assert norms["Dense_0"] == 0.0  # D's score layer: the information term does not pass through it
    assert all(float(optax_norm(layer)) > 0 for layer in g_grads.values())


def optax_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(tree)))


def test_the_discriminator_skips_q_on_request_and_keeps_q_statistics_unchanged():
    _, discriminator, _, d_variables, _, _ = tiny_networks()
    images = jax.random.uniform(jax.random.PRNGKey(5), (6, 28, 28, 1), minval=-1.0, maxval=1.0)
    (scores, q), updates = discriminator.apply(d_variables, images, False, train=True, mutable=["batch_stats"])
    assert q is None and scores.shape == (6,)
    chex.assert_trees_all_equal(updates["batch_stats"]["q_norm"], d_variables["batch_stats"]["q_norm"])
    (_, (logits, means, log_stds)), _ = discriminator.apply(d_variables, images, train=True, mutable=["batch_stats"])
    chex.assert_shape([logits, means, log_stds], [(6, 3), (6, 2), (6, 2)])


def test_codes_are_uniform_categories_and_uniform_continuous_values():
    categories, continuous = infogan.draw_codes(jax.random.PRNGKey(0), 20000, 10, 2)
    shares = np.bincount(np.asarray(categories), minlength=10) / 20000
    np.testing.assert_allclose(shares, 0.1, atol=0.01)  # 5 standard errors of a share of 0.1 over 20,000 draws
    assert float(continuous.min()) >= -1.0 and float(continuous.max()) < 1.0
    np.testing.assert_allclose(np.var(np.asarray(continuous), axis=0), 1 / 3, atol=0.01)  # var U(-1, 1) = 1/3


def test_code_agreement_of_a_small_table_equals_a_hand_computation_and_scikit_learn():
    joint = jnp.array([[0.25, 0.25], [0.0, 0.5]])  # code 0: half class 0, half class 1; code 1: class 1
    metrics = code_class_agreement(joint)
    assert float(metrics["purity"]) == pytest.approx(0.75)
    h_code, h_class = math.log(2), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    mutual_information = h_code + h_class - 1.5 * math.log(2)  # H(joint) = -(2 * 0.25 log 0.25 + 0.5 log 0.5)
    assert float(metrics["nmi"]) == pytest.approx(2 * mutual_information / (h_code + h_class), rel=1e-5)
    codes, classes = [0, 0, 1, 1], [0, 1, 1, 1]  # the same table as 4 examples
    assert float(metrics["nmi"]) == pytest.approx(normalized_mutual_info_score(classes, codes), rel=1e-5)


def test_code_agreement_of_random_tables_matches_scikit_learn_and_a_count_of_majorities():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, 3000)
    classes = np.where(rng.random(3000) < 0.6, codes, rng.integers(0, 5, 3000))  # classes follow codes 60% of the time
    joint = np.zeros((4, 5))
    np.add.at(joint, (codes, classes), 1 / 3000)
    metrics = code_class_agreement(jnp.asarray(joint, jnp.float32))
    majorities = sum(np.bincount(classes[codes == k]).max() for k in range(4))
    assert float(metrics["purity"]) == pytest.approx(majorities / 3000, rel=1e-5)
    assert float(metrics["nmi"]) == pytest.approx(normalized_mutual_info_score(classes, codes), rel=1e-4)


def test_one_code_per_class_scores_one_independence_zero_and_a_collapse_purity_one_but_nmi_zero():
    perfect = code_class_agreement(jnp.eye(10)[np.random.default_rng(1).permutation(10)] / 10)
    independent = code_class_agreement(jnp.full((10, 10), 0.01))
    collapsed = code_class_agreement(jnp.zeros((10, 10)).at[:, 3].set(0.1))
    assert float(perfect["purity"]) == pytest.approx(1.0) and float(perfect["nmi"]) == pytest.approx(1.0, rel=1e-5)
    assert float(independent["purity"]) == pytest.approx(0.1) and abs(float(independent["nmi"])) < 1e-6
    assert float(collapsed["purity"]) == pytest.approx(1.0) and abs(float(collapsed["nmi"])) < 1e-6


def test_one_hot_pairs_average_to_the_joint_histogram():
    codes, labels = jnp.array([0, 2, 2, 1, 0]), jnp.array([1, 1, 1, 0, 3])
    expected = np.histogram2d(np.asarray(codes), np.asarray(labels), bins=(3, 4), range=((0, 3), (0, 4)))[0] / 5
    np.testing.assert_allclose(infogan.one_hot_pairs(codes, 3, labels, 4).mean(axis=0), expected)


@pytest.fixture
def untrained_classifier(monkeypatch):
    """A random-weight metric classifier in place of the trained one: the family's machinery, not its numbers."""
    model = metric_classifier.Classifier(10)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))["params"]
    monkeypatch.setattr(infogan, "code_classifier", lambda config: metric_classifier.TrainedClassifier(model, params, 0.0, ""))


@functools.cache
def mnist_train():
    return data.load("mnist", "train", source="embedded")


@functools.cache
def states_after(steps: int = 2, **overrides):
    """(family, [state before and after each of `steps` train steps], [metrics], batch), for tests that use
    the untrained_classifier fixture (the first builds the family; the others reuse it)."""
    config = tiny_config(**overrides)
    family = infogan.make_family(config, mnist_train())
    batch = to_model_batch(mnist_train().take(np.arange(config.batch_size)))
    states, metrics = [jax.jit(family.init)(jax.random.PRNGKey(0), batch)], []
    step = jax.jit(family.train_step)
    for i in range(steps):
        state, step_metrics = step(states[-1], batch, jax.random.PRNGKey(i))
        states.append(state)
        metrics.append(step_metrics)
    return family, states, metrics, batch


def test_the_train_step_trains_q_and_d_body_and_g_by_the_information_term(untrained_classifier):
    _, with_info, metrics, _ = states_after()
    _, without, _, _ = states_after(info_weight_categorical=0.0, info_weight_continuous=0.0)
    assert set(metrics[-1]) == {"d_loss", "g_loss", "info_categorical", "info_continuous"}
    chex.assert_tree_all_finite(metrics)
    d_with, d_without = with_info[-1]["discriminator"]["params"], without[-1]["discriminator"]["params"]
    d_start = with_info[0]["discriminator"]["params"]
    chex.assert_trees_all_equal(d_without["q_out"], d_start["q_out"])  # no information term: Q's head gets no gradient
    assert not np.allclose(d_with["q_out"]["kernel"], d_start["q_out"]["kernel"])
    assert not np.allclose(d_with["Conv_0"]["kernel"], d_without["Conv_0"]["kernel"])  # the shared body
    g_with, g_without = with_info[-1]["generator"]["params"], without[-1]["generator"]["params"]
    assert not np.allclose(g_with["Dense_0"]["kernel"], g_without["Dense_0"]["kernel"])


def test_a_first_adam_step_moves_g_by_its_scaled_learning_rate_and_d_by_the_base_one(untrained_classifier):
    """Adam's first update is lr * g / (|g| + eps), so each parameter moves by lr where its gradient is not ~0."""
    _, states, _, _ = states_after()

    def largest_move(network):
        moves = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), states[0][network]["params"], states[1][network]["params"])
        return max(jax.tree.leaves(moves))

    assert largest_move("generator") == pytest.approx(5 * 2e-4, rel=1e-3)  # g_learning_rate_scale 5 x learning_rate
    assert largest_move("discriminator") == pytest.approx(2e-4, rel=1e-3)


def test_eval_gives_the_tables_of_codes_and_classes_and_samples_in_the_unit_interval(untrained_classifier):
    family, states, _, batch = states_after()
    per_example = jax.jit(family.eval_step)(states[-1], batch, jax.random.PRNGKey(7))
    chex.assert_shape([per_example["code_class_joint"], per_example["q_class_joint"]], [(8, 10, 10), (8, 10, 10)])
    # every example contributes 1/K to each category's row: the code marginal is exactly uniform
    np.testing.assert_allclose(per_example["code_class_joint"].sum(axis=2), 0.1, rtol=1e-6)
    np.testing.assert_allclose(per_example["q_class_joint"].sum(axis=1), jax.nn.one_hot(batch["label"], 10))
    scalars = family.summarize_eval(jax.tree.map(lambda v: v.mean(axis=0), per_example))
    assert {"code_purity", "code_nmi", "q_purity", "q_nmi", "info_categorical"} <= set(scalars)
    assert "code_class_joint" not in scalars and all(np.ndim(v) == 0 for v in scalars.values())
    samples = jax.jit(family.sample, static_argnums=2)(states[-1], jax.random.PRNGKey(8), 12)
    chex.assert_shape(samples, (12, 28, 28, 1))
    assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"adversarial_loss": "wasserstein_gp"}, "no gradient penalty, which wasserstein_gp needs; use adversarial_loss non_saturating"),
        ({"num_categories": 1}, "num_categories must be at least 2"),
        ({"num_continuous": -1}, "num_continuous must be >= 0"),
        ({"g_learning_rate_scale": 0.0}, "g_learning_rate_scale must be a positive number, got 0.0"),
        ({"info_weight_continuous": -0.1}, "info_weight_continuous must be a number >= 0"),
        ({"dataset": "ring8"}, "'ring8' is 2-D points; use an image dataset"),
        ({"discriminator_norm": "layer"}, "unknown discriminator_norm 'layer'; choose one of: none, batch, spectral"),
    ],
)
def test_bad_settings_are_refused_before_any_work(overrides, message):
    with pytest.raises(UserError, match=message):
        experiment.validate(tiny_config(**overrides))


def test_the_experiment_writes_its_figure_and_evaluates_with_purity_and_nmi(tmp_path):
    result = experiment.run(tiny_config(), str(tmp_path), "infogan_mnist")
    assert (tmp_path / "info_codes.png").is_file() and (tmp_path / "samples_2.png").is_file()
    summary = json.load(open(tmp_path / "summary.json"))
    assert {"code_purity", "code_nmi", "q_purity", "q_nmi", "info_categorical", "info_continuous"} <= set(summary["test"])
    assert 0.1 <= summary["test"]["q_purity"] <= 1.0 and summary["num_params"] == result.summary["num_params"]
    assert evaluate.main([str(tmp_path), "--num_samples", "100", "--iwae_samples", "0"]) == 0
    metrics = json.load(open(tmp_path / "eval.json"))
    assert {"frechet_distance", "kid", "recall", "classes_covered", "code_purity", "code_nmi", "q_purity"} <= set(metrics)
    assert 0.0 <= metrics["code_nmi"] <= 1.0 + 1e-6 and 0.0 < metrics["code_purity"] <= 1.0 + 1e-6


def test_infogan_is_a_default_study_family_with_its_search_space():
    from experiments import compare, study
    from genjax.search import draw_settings, space_of

    assert "infogan" in compare.IMAGE_CONTENDERS and "infogan" in study.CONTENDERS
    assert "infogan" in study.DEFAULT.families and "infogan" not in study.OFF_BY_DEFAULT
    assert study.parse_args(["--families", "infogan"])[1].families == ("infogan",)
    config = study.CONTENDERS["infogan"].config()
    settings = draw_settings(space_of(infogan, config), config, 3, seed=0, name="infogan")
    assert settings[0] == {"learning_rate": 2e-4, "adam_b1": 0.5}
    assert all(1e-5 <= s["learning_rate"] <= 1e-2 and 0 <= s["adam_b1"] < 1 for s in settings)
