"""Mixed precision (--config.compute_dtype=bfloat16, genjax.nn.precision) in every family: float32 parameters,
optimizer state and statistics; every layer computing in bfloat16; float32 losses, metrics and samples;
training that follows the float32 run; the float32 default untouched; other dtypes refused."""

import functools
import importlib
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import data
from genjax.checkpoint import Checkpoints
from genjax.config import base_config, validate_base
from genjax.data import to_model_batch
from genjax.errors import UserError
from genjax.experiment import validate
from genjax.models import vae2stage, vqvae_prior
from genjax.train.trials import TrialGroup
from tests.conftest import run_module, tiny_vae_config
from tests.test_trials import _alone as train_alone

VQVAE = dict(conv_channels=(4, 8), residual_blocks=1, residual_hidden=4, num_codes=8, code_dim=3)
GAN = dict(latent_dim=8, g_hidden_sizes=(16,), d_hidden_sizes=(16, 16), conv_channels=(4, 8))
# name -> (experiment, tiny overrides): every family, and every variant that builds layers of its own
CASES = {
    "ae": ("ae_mnist", dict(hidden_sizes=(16,), latent_dim=4)),
    "denoising_conv_ae": ("ae_mnist", dict(architecture="conv", conv_channels=(4, 8), latent_dim=4, noise="gaussian")),
    "vae": ("vae_mnist", dict(hidden_sizes=(16,), latent_dim=4)),
    "conv_vae_gaussian": ("vae_mnist", dict(architecture="conv", conv_channels=(4, 8), latent_dim=4, likelihood="gaussian")),
    "cvae": ("cvae_mnist", dict(hidden_sizes=(16,), latent_dim=4)),
    "conv_cvae": ("cvae_mnist", dict(architecture="conv", conv_channels=(4, 8), latent_dim=4)),
    "vqvae": ("vqvae_mnist", VQVAE),
    "vqvae_loss_codebook_kmeans": ("vqvae_mnist", dict(VQVAE, codebook_update="loss", codebook_init="kmeans")),
    "vqvae_prior": ("vqvae_mnist", dict(VQVAE, prior_width=8, prior_layers=1, prior_heads=2)),
    "vae2stage": ("vae2stage_mnist", dict(hidden_sizes=(16,), latent_dim=4, stage2_hidden_sizes=(16,))),
    "mlp_gan": ("gan_mnist", GAN),
    "mlp_gan_batch_norm": ("gan_mnist", dict(GAN, discriminator_norm="batch")),
    "conditional_spectral_hinge_gan": ("gan_mnist", dict(GAN, discriminator_norm="spectral", adversarial_loss="hinge", conditional=True)),
    "dcgan": ("dcgan_mnist", GAN),
    "lsgan_transpose": ("lsgan_mnist", dict(GAN, upsample="transpose")),
    "sngan": ("sngan_mnist", GAN),
    "infogan": ("infogan_mnist", dict(latent_dim=8, conv_channels=(4, 8), q_hidden=8)),
    "wgan_gp": ("wgan_gp_mnist", dict(GAN, n_critic=2)),
    "pacgan_maxout_batch_norm_generator": ("pacgan_toy2d", dict(g_hidden_sizes=(16,), d_hidden_sizes=(16,), pack=2, maxout_pieces=3)),
    "flow_mlp": ("flow_toy2d", dict(hidden_sizes=(16, 16))),
    "flow_unet": ("flow_mnist", dict(channels=(4, 8), warmup_steps=0)),
}
# Flax's layers: each one's output is an activation of the network
LAYERS = (nn.Dense, nn.Conv, nn.ConvTranspose, nn.Embed, nn.BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.MultiHeadDotProductAttention)
BATCH = 8


@functools.cache
def dataset(name: str):
    return data.load(name, "train", source="embedded" if name == "mnist" else "auto")


def trained_one_step(workdir, name: str, experiment: str, model: str) -> str:
    """A run directory holding the float32 model of CASES[name] trained one step (a later stage's first)."""
    config = config_of(name, "float32")
    family = validate(config).make_family(config, dataset("mnist"))
    batch = batch_of(config, 0)
    state = jax.jit(family.init)(jax.random.PRNGKey(0), batch)
    state, _ = jax.jit(family.train_step)(state, batch, jax.random.PRNGKey(1))
    checkpoints = Checkpoints(str(workdir / "checkpoints"))
    checkpoints.save(1, state, {"experiment": experiment, "model": model, "step": 1})
    checkpoints.close()
    return str(workdir)


@pytest.fixture(scope="module")
def stage1_runs(tmp_path_factory):
    """The first stages the second-stage cases are fitted to: {"vqvae_prior": a VQ-VAE run, "vae2stage": a VAE run}."""
    return {
        "vqvae_prior": trained_one_step(tmp_path_factory.mktemp("vqvae"), "vqvae", "vqvae_mnist", "vqvae"),
        "vae2stage": trained_one_step(tmp_path_factory.mktemp("vae"), "vae", "vae2stage_mnist", "vae"),
    }


def config_of(name: str, dtype: str, stage1_runs: dict | None = None):
    experiment, overrides = CASES[name]
    config = importlib.import_module(f"experiments.{experiment}").get_config()
    config.update(dict(overrides, batch_size=BATCH, compute_dtype=dtype))
    if config.dataset == "mnist":
        config.source = "embedded"
    if name == "vqvae_prior":
        config = vqvae_prior.stage_config(config, stage1_runs[name], 1)
    if name == "vae2stage":
        config = vae2stage.stage_config(config, stage1_runs[name], 1)
    return config


def batch_of(config, index: int) -> dict:
    """Batch `index` of the training split: examples index * B .. (index + 1) * B - 1."""
    return to_model_batch(dataset(config.dataset).take(np.arange(index * config.batch_size, (index + 1) * config.batch_size)))


def family_of(name: str, dtype: str, stage1_runs: dict):
    config = config_of(name, dtype, stage1_runs)
    return validate(config).make_family(config, dataset(config.dataset)), config


def float_dtypes(tree) -> set:
    return {jnp.dtype(leaf.dtype) for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.inexact)}


def layer_output_dtypes(fn, *args) -> list:
    """(layer class, output dtype) of every Flax layer call while tracing fn(*args) (nothing is computed)."""
    calls = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, LAYERS) and context.method_name == "__call__":
            calls.append((type(context.module).__name__, jnp.dtype(out.dtype)))
        return out

    with nn.intercept_methods(record):
        jax.eval_shape(lambda *args: fn(*args), *args)  # a new function: a cached trace would call no layer
    return calls


@pytest.mark.parametrize("name", CASES)
def test_a_bfloat16_run_keeps_float32_state_and_computes_every_layer_in_bfloat16(name, stage1_runs):
    family, config = family_of(name, "bfloat16", stage1_runs)
    batch, key = batch_of(config, 0), jax.random.PRNGKey(0)
    state = jax.eval_shape(family.init, key, batch)
    new_state, metrics = jax.eval_shape(family.train_step, state, batch, key)
    # parameters, Adam moments, parameter averages, BatchNorm averages, spectral-norm vectors, codebook EMAs
    assert float_dtypes(state) == float_dtypes(new_state) == {jnp.dtype(jnp.float32)}
    assert float_dtypes(metrics) == {jnp.dtype(jnp.float32)}
    layers = layer_output_dtypes(family.train_step, state, batch, key)
    assert layers and all(dtype == jnp.bfloat16 for _, dtype in layers), [call for call in layers if call[1] != jnp.bfloat16]
    step_program = str(jax.make_jaxpr(family.train_step)(state, batch, key))
    assert re.search(r":bf16\[[\d,]*\] = (dot_general|conv_general_dilated)", step_program)
    assert float_dtypes(jax.eval_shape(family.eval_step, state, batch, key)) == {jnp.dtype(jnp.float32)}
    assert jax.eval_shape(lambda state, key: family.sample(state, key, 10), state, key).dtype == jnp.float32
    if family.reconstruct is not None:
        assert jax.eval_shape(family.reconstruct, state, batch, key).dtype == jnp.float32


@pytest.mark.parametrize("name", ["vae", "dcgan", "sngan", "vqvae_prior", "flow_unet"])
def test_the_float32_default_computes_nothing_in_bfloat16(name, stage1_runs):
    family, config = family_of(name, "float32", stage1_runs)
    assert config.compute_dtype == base_config().compute_dtype == "float32"
    batch, key = batch_of(config, 0), jax.random.PRNGKey(0)
    state = jax.eval_shape(family.init, key, batch)
    assert "bf16" not in str(jax.make_jaxpr(family.train_step)(state, batch, key))


TRAINED = ["ae", "vae", "cvae", "vqvae", "vqvae_prior", "vae2stage", "dcgan", "flow_mlp"]  # one of each family
STEPS = 30


def training_losses(name: str, dtype: str, stage1_runs: dict) -> np.ndarray:
    """The training loss (a GAN's: D's) of steps 1..STEPS from seed 0, on the first STEPS batches."""
    family, config = family_of(name, dtype, stage1_runs)
    state = jax.jit(family.init)(jax.random.PRNGKey(0), batch_of(config, 0))
    train_step = jax.jit(family.train_step)
    losses = []
    for step in range(STEPS):
        state, metrics = train_step(state, batch_of(config, step), jax.random.fold_in(jax.random.PRNGKey(1), step))
        losses.append(float(metrics["d_loss" if config.model == "gan" else "loss"]))
    return np.asarray(losses)


@pytest.mark.parametrize("name", TRAINED)
def test_a_bfloat16_run_trains_like_the_float32_run_from_the_same_seed(name, stage1_runs):
    """The loss falls (the mean of the last 5 steps is below that of the first 5), and the bfloat16 run ends
    within 5% of the float32 run's fall of it: |last_bf16 - last_f32| <= 0.05 (first_f32 - last_f32).

    Why this tolerance: bfloat16 keeps 8 significant bits, so every layer output is rounded by up to
    2^-8 = 0.4%, and the two runs drift apart a little with every step. Measured over these families the
    gap is under 1% of the fall (0.1-0.5%; the loss itself within 0.1%), so 5% leaves room for other CPUs
    and XLA versions, while a run that does not learn in bfloat16 misses by about 100%. The band is
    relative to the fall, not to the loss: a tiny net's loss falls only a few percent in 30 steps, less
    than a band of 10% of the loss would be."""
    bf16, f32 = training_losses(name, "bfloat16", stage1_runs), training_losses(name, "float32", stage1_runs)
    assert np.all(np.isfinite(bf16))
    assert bf16[-5:].mean() < bf16[:5].mean(), bf16
    fall = f32[:5].mean() - f32[-5:].mean()
    assert abs(bf16[-5:].mean() - f32[-5:].mean()) <= 0.05 * fall, (bf16, f32)


@pytest.mark.parametrize("dtype", ["float16", "fp32", "half"])
def test_an_unknown_compute_dtype_is_refused_in_one_line_naming_the_choices(dtype):
    config = base_config()
    config.compute_dtype = dtype
    with pytest.raises(UserError, match=f"^unknown compute_dtype '{dtype}'; choose one of: float32, bfloat16$"):
        validate_base(config)


def test_the_command_line_refuses_an_unknown_compute_dtype_before_any_work(tmp_path):
    result = run_module("experiments.vae_mnist", f"--workdir={tmp_path / 'run'}", "--config.compute_dtype=half")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: unknown compute_dtype 'half'; choose one of: float32, bfloat16"
    assert not (tmp_path / "run").exists()


def test_a_bfloat16_trial_group_trains_each_setting_as_it_trains_alone(mnist):
    """compute_dtype is a static field of the group, the learning rate a traced one: vmapped trials compute
    in bfloat16 with float32 state, and each ends as its setting trained alone does: batched and plain
    matmuls may sum in other orders, and Adam turns such rounding into parameter differences (3e-8 measured
    after 5 steps; the bound allows 300x that)."""
    config = tiny_vae_config(batch_size=16, compute_dtype="bfloat16")
    settings = [{"learning_rate": 1e-3}, {"learning_rate": 3e-3}]
    group = TrialGroup(config, settings, mnist[0], "vmap")
    trained, _ = group.train(group.init(), 0, 5)
    assert float_dtypes(trained["state"]) == {jnp.dtype(jnp.float32)}
    for index, setting in enumerate(settings):
        alone = train_alone(config, setting, mnist[0], 5)
        chex.assert_trees_all_close(group.trial_state(trained, index)["params"], alone["params"], atol=1e-5)
