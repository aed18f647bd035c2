"""VQ-VAE: the quantizer against numpy and hand computations, the family's steps, the prior's causality,
and the two-stage experiment end to end with resume."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import vqvae_mnist
from genjax import losses
from genjax.checkpoint import Checkpoints
from genjax.data import to_model_batch
from genjax.errors import UserError
from genjax.models import vqvae, vqvae_prior
from genjax.nn import vector_quantizer as vq
from genjax.nn.transformer import CausalTransformer, sample_tokens
from genjax.train.family import init_program, initial_state
from genjax.train.rundir import refit_if_stale
from tests.conftest import train_steps

TINY = dict(
    conv_channels=(4, 8),
    residual_blocks=1,
    residual_hidden=4,
    num_codes=8,
    code_dim=3,
    batch_size=8,
    num_steps=4,
    steps_per_call=2,
    eval_every=2,
    checkpoint_every=2,
    num_samples=4,
    source="embedded",
    prior_num_steps=4,
    prior_width=8,
    prior_layers=1,
    prior_heads=2,
)


def tiny_vqvae_config(**overrides):
    config = vqvae_mnist.get_config()
    config.update({**TINY, **overrides})
    return config


@pytest.fixture(scope="module")
def batch(mnist):
    return to_model_batch(mnist[0].take(np.arange(8)))


def test_quantization_picks_the_nearest_code():
    z = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype(np.float32)
    codebook = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    quantized, indices = jax.jit(vq.quantize)(z, codebook)
    expected = np.argmin(((z[..., None, :] - codebook) ** 2).sum(-1), axis=-1)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(quantized, codebook[expected])


def test_straight_through_gradient_is_the_identity():
    z = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 3, 4))
    codebook = jax.random.normal(jax.random.PRNGKey(1), (6, 4))
    cotangent = jax.random.normal(jax.random.PRNGKey(2), z.shape)
    value, pullback = jax.vjp(lambda z: losses.straight_through(z, vq.quantize(z, codebook)[0]), z)
    np.testing.assert_allclose(value, vq.quantize(z, codebook)[0], rtol=1e-6)
    np.testing.assert_array_equal(pullback(cotangent)[0], cotangent)


def test_codebook_and_commitment_losses_move_only_their_side():
    z = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 3, 4))
    quantized = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 3, 4))
    expected = np.sum((np.asarray(z) - np.asarray(quantized)).reshape(2, -1) ** 2, axis=1)
    for loss, moves in [(losses.vq_codebook_loss, 1), (losses.vq_commitment_loss, 0)]:
        np.testing.assert_allclose(loss(z, quantized), expected, rtol=1e-5)
        gradients = jax.grad(lambda z, e: jnp.sum(loss(z, e)), argnums=(0, 1))(z, quantized)
        np.testing.assert_allclose(gradients[moves], 2 * (quantized - z) * (1 if moves else -1), rtol=1e-5)
        np.testing.assert_array_equal(gradients[1 - moves], 0.0)  # the stop-gradient side


def test_ema_update_equals_a_hand_computation():
    z = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]], np.float32)
    indices = np.array([0, 0, 2, 0])
    usage, code_sum = np.array([1.0, 2.0, 3.0], np.float32), np.ones((3, 2), np.float32)
    decay, eps = 0.5, 0.1
    counts, sums = vq.code_statistics(jnp.asarray(z), jnp.asarray(indices), 3)
    np.testing.assert_array_equal(counts, [3, 0, 1])
    np.testing.assert_array_equal(sums, [[8, 11], [0, 0], [4, 5]])
    new_usage, new_sum, codebook = vq.ema_codebook(usage, code_sum, counts, sums, decay, eps)
    hand_usage = np.array([0.5 * 1 + 0.5 * 3, 0.5 * 2 + 0, 0.5 * 3 + 0.5 * 1])  # [2, 1, 2]
    hand_sum = np.array([[0.5 + 4, 0.5 + 5.5], [0.5, 0.5], [0.5 + 2, 0.5 + 2.5]])
    smoothed = (hand_usage + eps) / (5 + 3 * eps) * 5
    np.testing.assert_allclose(new_usage, hand_usage, rtol=1e-6)
    np.testing.assert_allclose(new_sum, hand_sum, rtol=1e-6)
    np.testing.assert_allclose(codebook, hand_sum / smoothed[:, None], rtol=1e-6)


def test_restart_replaces_exactly_the_dead_codes():
    codebook = jnp.arange(10.0).reshape(5, 2)
    usage = jnp.array([3.0, 0.2, 1.0, 0.0, 5.0])
    z = 100 + jax.random.normal(jax.random.PRNGKey(0), (2, 3, 3, 2))  # far from every code
    restarted, dead = jax.jit(vq.restart_dead_codes, static_argnums=4)(jax.random.PRNGKey(1), codebook, usage, z, 1.0)
    np.testing.assert_array_equal(dead, [False, True, False, True, False])
    np.testing.assert_array_equal(restarted[~dead], codebook[~dead])
    vectors = np.asarray(z).reshape(-1, 2)
    for row in np.asarray(restarted)[np.asarray(dead)]:
        assert any(np.array_equal(row, v) for v in vectors)  # each restarted code is an encoder output


def test_kmeans_finds_well_separated_clusters():
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float32)
    points = np.concatenate([c + np.random.default_rng(i).normal(0, 0.1, (20, 2)) for i, c in enumerate(centers)]).astype(np.float32)
    found = np.asarray(jax.jit(vq.kmeans, static_argnums=(2, 3))(jax.random.PRNGKey(0), points, 3, 10))
    distances = np.linalg.norm(found[:, None] - centers[None], axis=-1)
    np.testing.assert_array_equal(np.sort(distances.argmin(axis=1)), [0, 1, 2])
    assert distances.min(axis=1).max() < 0.1


def test_perplexity_and_used_fraction():
    uniform = vqvae.summarize_eval({"code_usage": jnp.full(16, 1 / 16), "recon_mse": jnp.array(0.5)})
    np.testing.assert_allclose(uniform["perplexity"], 16, rtol=1e-5)
    assert float(uniform["used_fraction"]) == 1.0 and float(uniform["recon_mse"]) == 0.5 and "code_usage" not in uniform
    half = vqvae.summarize_eval({"code_usage": jnp.array([0.25, 0.0, 0.25, 0.0, 0.25, 0.0, 0.25, 0.0])})
    np.testing.assert_allclose(half["perplexity"], 4, rtol=1e-5)
    assert float(half["used_fraction"]) == 0.5


@pytest.fixture(scope="module")
def ema_family(mnist, batch):
    """The default variant (EMA codebook, restarts) with k-means init, and its initial state."""
    family = vqvae.make_family(tiny_vqvae_config(codebook_init="kmeans"), mnist[0])
    return family, jax.jit(family.init)(jax.random.PRNGKey(0), batch)


def _steps_keep_shapes_without_recompiling(family, state, batch):
    chex.clear_trace_counter()  # each caller defines `step` anew

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state, batch, key):
        return family.train_step(state, batch, key)

    for i in range(3):
        new_state, metrics = step(state, batch, jax.random.PRNGKey(i))
        chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
        state = new_state
    assert set(metrics) == {"loss", "reconstruction", "commitment", "perplexity", "restarted"}
    chex.assert_tree_all_finite(metrics)
    return state


def test_ema_family_shapes_and_steps(ema_family, batch):
    family, state = ema_family
    chex.assert_shape(state["params"]["codebook"], (8, 3))
    chex.assert_shape(state["code_sum"], (8, 3))
    state = _steps_keep_shapes_without_recompiling(family, state, batch)
    usage, code_sum = state["code_usage"], state["code_sum"]
    smoothed = (usage + 1e-5) / (usage.sum() + 8e-5) * usage.sum()
    # the codebook is the smoothed EMA mean; a restarted code z has usage 1 and sum z, equal up to the smoothing
    np.testing.assert_allclose(state["params"]["codebook"], code_sum / smoothed[:, None], rtol=1e-3, atol=1e-6)
    per_example = jax.jit(family.eval_step)(state, batch, jax.random.PRNGKey(5))
    chex.assert_shape([per_example[k] for k in ("reconstruction", "recon_mse", "commitment")], (8,))
    chex.assert_shape(per_example["code_usage"], (8, 8))
    np.testing.assert_allclose(per_example["code_usage"].sum(axis=1), 1.0, rtol=1e-6)
    samples = jax.jit(family.sample, static_argnums=2)(state, jax.random.PRNGKey(6), 5)
    chex.assert_shape(samples, (5, 28, 28, 1))
    chex.assert_shape(jax.jit(family.reconstruct)(state, batch, jax.random.PRNGKey(7)), (8, 28, 28, 1))
    assert float(samples.min()) >= 0 and float(samples.max()) <= 1


def test_loss_family_steps_move_the_codebook_by_gradients(mnist, batch):
    family = vqvae.make_family(tiny_vqvae_config(codebook_update="loss", restart_threshold=0.0), mnist[0])
    state = jax.jit(family.init)(jax.random.PRNGKey(0), batch)
    assert "code_sum" not in state
    new_state = _steps_keep_shapes_without_recompiling(family, state, batch)
    assert not np.allclose(new_state["params"]["codebook"], state["params"]["codebook"])


def test_prior_logits_are_causal():
    prior = CausalTransformer(vocab_size=5, length=6, width=8, layers=2, heads=2)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (3, 6), 0, 5)
    params = prior.init(jax.random.PRNGKey(1), tokens)
    logits = jax.jit(prior.apply)
    base = logits(params, tokens)
    chex.assert_shape(base, (3, 6, 5))
    for position in range(6):
        changed = logits(params, tokens.at[:, position].set((tokens[:, position] + 1) % 5))
        np.testing.assert_array_equal(changed[:, : position + 1], base[:, : position + 1])  # earlier logits untouched
        if position < 5:
            assert not np.allclose(changed[:, position + 1], base[:, position + 1])  # the next one does see it


def test_cached_sampling_matches_rerunning_the_whole_sequence():
    """sample_tokens decodes with a key/value cache; each step's logits must equal the full forward pass's
    logits at that position given the tokens drawn so far, and the draws those of re-running the sequence."""
    prior = CausalTransformer(vocab_size=5, length=6, width=8, layers=2, heads=2)
    params = prior.init(jax.random.PRNGKey(1), jnp.zeros((3, 6), jnp.int32))["params"]
    key = jax.random.PRNGKey(2)
    drawn = jax.jit(sample_tokens, static_argnums=(0, 3))(prior, params, key, 40)
    chex.assert_shape(drawn, (40, 6))
    assert drawn.dtype == jnp.int32 and int(drawn.min()) >= 0 and int(drawn.max()) < 5
    assert len(np.unique(np.asarray(drawn), axis=0)) > 10  # draws, not one repeated sequence

    full_logits = jax.jit(lambda tokens: prior.apply({"params": params}, tokens))
    reference = jnp.zeros((40, 6), jnp.int32)
    for i in range(6):  # the sampler without a cache: the whole sequence at every position
        reference = reference.at[:, i].set(jax.random.categorical(jax.random.fold_in(key, i), full_logits(reference)[:, i]))
    np.testing.assert_array_equal(drawn, reference)

    decoder = prior.clone(decode=True)
    cache = decoder.init(jax.random.PRNGKey(0), jnp.zeros((40, 6), jnp.int32))["cache"]
    previous = jnp.zeros((40, 1), jnp.int32)
    for i in range(6):
        step_logits, updates = decoder.apply({"params": params, "cache": cache}, previous, mutable=["cache"])
        cache, previous = updates["cache"], drawn[:, i : i + 1]
        np.testing.assert_allclose(step_logits[:, 0], full_logits(drawn)[:, i], rtol=1e-5, atol=1e-5)


def test_prior_family_keeps_the_vqvae_frozen(tmp_path, mnist, batch, ema_family):
    config = tiny_vqvae_config()
    vqvae_state = ema_family[1]
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"))
    checkpoints.save(4, vqvae_state, {"experiment": "vqvae_mnist", "model": "vqvae", "step": 4})
    checkpoints.close()
    prior_config = vqvae_prior.stage_config(config, str(tmp_path), 4)
    vqvae_prior.validate(prior_config)
    family = vqvae_prior.make_family(prior_config, mnist[0])
    state = jax.jit(family.init)(jax.random.PRNGKey(1), batch)
    chex.assert_trees_all_equal(state["vqvae"], vqvae_state["params"])
    new_state, metrics = jax.jit(family.train_step)(state, batch, jax.random.PRNGKey(2))
    chex.assert_trees_all_equal(new_state["vqvae"], vqvae_state["params"])
    assert not np.array_equal(new_state["params"]["Dense_0"]["kernel"], state["params"]["Dense_0"]["kernel"])
    assert float(metrics["loss"]) > 0
    per_example = jax.jit(family.eval_step)(state, batch, jax.random.PRNGKey(3))
    chex.assert_shape(per_example["code_nll"], (8,))
    assert {"recon_mse", "code_usage"} <= set(per_example)
    chex.assert_shape(jax.jit(family.sample, static_argnums=2)(state, jax.random.PRNGKey(4), 3), (3, 28, 28, 1))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("codebook_update", "adam", "unknown codebook_update"),
        ("codebook_init", "zeros", "unknown codebook_init"),
        ("codebook_decay", 1.0, "codebook_decay"),
        ("num_codes", 1, "num_codes"),
        ("restart_threshold", -1.0, "restart_threshold"),
        ("commitment_weight", -0.1, "commitment_weight"),
        ("prior_heads", 3, "multiple of prior_heads"),
    ],
)
def test_invalid_fields_are_refused(field, value, message):
    with pytest.raises(UserError, match=message):
        vqvae_prior.validate(vqvae_prior.stage_config(tiny_vqvae_config(**{field: value}), "runs/x", 0))


def _cli(workdir, *args):
    overrides = [f"--config.{field}={value}" for field, value in TINY.items()]
    return vqvae_mnist.main([f"--workdir={workdir}", *overrides, *args])


def test_experiment_runs_both_stages_and_the_prior_resumes(tmp_path, capsys):
    assert _cli(tmp_path) == 0
    assert "done: 4 steps" in capsys.readouterr().out
    for directory in (tmp_path, tmp_path / "vqvae"):
        for name in ["config.json", "metrics.jsonl", "summary.json", "samples.npz", "samples_4.png", "reconstructions_4.png", "curves.png"]:
            assert (directory / name).is_file(), directory / name
    final, first = json.load(open(tmp_path / "summary.json")), json.load(open(tmp_path / "vqvae" / "summary.json"))
    assert final["model"] == "vqvae_prior" and first["model"] == "vqvae"
    assert {"code_nll", "recon_mse", "perplexity", "used_fraction"} <= set(final["test"])
    assert final["test"]["recon_mse"] == pytest.approx(first["test"]["recon_mse"], rel=1e-5)  # the same frozen VQ-VAE
    prior = CausalTransformer(vocab_size=8, length=49, width=8, layers=1, heads=2)
    prior_params = jax.eval_shape(prior.init, jax.random.PRNGKey(0), jnp.zeros((1, 49), jnp.int32))
    assert final["num_params"] == sum(leaf.size for leaf in jax.tree.leaves(prior_params))  # the frozen VQ-VAE is not counted
    with np.load(tmp_path / "samples.npz") as f:
        assert f["samples"].shape == (4, 28, 28, 1)

    assert _cli(tmp_path, "--config.prior_num_steps=6") == 0  # the VQ-VAE is finished; the prior resumes
    assert train_steps(tmp_path) == [2, 4, 6] and train_steps(tmp_path / "vqvae") == [2, 4]
    assert Checkpoints(str(tmp_path / "checkpoints")).manager.all_steps() == [2, 4, 6]


def test_a_prior_fitted_to_another_vqvae_step_is_fitted_again(tmp_path):
    config = tiny_vqvae_config()
    fitted = vqvae_prior.stage_config(config, str(tmp_path / "vqvae"), 4)
    (tmp_path / "config.json").write_text(fitted.to_json())
    same, later = (vqvae_prior.stage_config(config, str(tmp_path / "vqvae"), step) for step in (4, 6))
    refit_if_stale(same, str(tmp_path), "vqvae_step", "the VQ-VAE")
    refit_if_stale(later, str(tmp_path), "vqvae_step", "the VQ-VAE")
    assert not same.fresh and later.fresh


def test_help_lists_the_prior_fields(capsys):
    assert vqvae_mnist.main(["--help"]) == 0
    text = capsys.readouterr().out
    for field in ["num_codes", "codebook_update", "restart_threshold", "prior_num_steps", "prior_width"]:
        line = next(line for line in text.splitlines() if line.startswith(f"  {field} "))
        assert len(line.split()) > 2, line  # a help text after the default


def test_priors_of_two_vqvae_checkpoints_share_one_init_program(tmp_path, mnist, batch, ema_family):
    """The frozen VQ-VAE enters the prior's init program as an argument: a constant would make a new program (a
    compile, a 400 KB cache entry) for every checkpoint a prior is fitted to, as the study does at each budget point."""
    vqvae_state = ema_family[1]
    other = jax.tree.map(lambda x: x + 1 if jnp.issubdtype(x.dtype, jnp.floating) else x, vqvae_state)
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"))
    checkpoints.save(4, vqvae_state, {"experiment": "vqvae_mnist", "model": "vqvae", "step": 4})
    checkpoints.save(6, other, {"experiment": "vqvae_mnist", "model": "vqvae", "step": 6})
    checkpoints.close()
    texts, plain_texts, states = [], [], []
    for step, frozen in ((4, vqvae_state), (6, other)):
        family = vqvae_prior.make_family(vqvae_prior.stage_config(tiny_vqvae_config(), str(tmp_path), step), mnist[0])
        program, constants = init_program(family.init, jax.random.PRNGKey(1), batch)
        texts.append(program.lower(constants, jax.random.PRNGKey(1), batch).as_text())
        plain_texts.append(jax.jit(family.init).lower(jax.random.PRNGKey(1), batch).as_text())
        state = initial_state(family.init, jax.random.PRNGKey(1), batch)
        chex.assert_trees_all_equal(state, jax.jit(family.init)(jax.random.PRNGKey(1), batch))
        chex.assert_trees_all_equal(state["vqvae"], frozen["params"])
        states.append(state)
    assert plain_texts[0] != plain_texts[1], "a plain jax.jit of init embeds the VQ-VAE's parameters"
    assert texts[0] == texts[1]
    chex.assert_trees_all_equal(states[0]["params"], states[1]["params"])
