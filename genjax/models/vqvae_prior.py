"""An autoregressive prior over the code maps of a trained VQ-VAE: the VQ-VAE's second stage.

van den Oord et al. (2017), section 3.3: after the VQ-VAE is trained, fit a prior p(c) over its discrete
code maps c (7x7 for MNIST) and generate images by decoding codes drawn from it. The prior here is a small
causal transformer over the code map flattened in raster order (genjax.nn.transformer) rather than the
paper's PixelCNN: every position sees all earlier ones (a PixelCNN's masked convolutions leave a blind
spot unless split into vertical and horizontal stacks), causality holds by construction through the
attention mask, and for 49 positions full attention is cheap. Training minimises, per image,

    code_nll = -log p(c) = -sum_i log p(c_i | c_<i)    (nats),    c = VQ-VAE codes of the image

The state carries the frozen VQ-VAE parameters under the key 'vqvae' (restored from the checkpoint at step
config.vqvae_step in config.vqvae_workdir when the prior starts, then saved with every prior checkpoint),
so count_params counts the prior only. `sample` draws codes position by position (explicit keys) and
decodes them; eval reports code_nll next to the frozen VQ-VAE's metrics (recon_mse, perplexity, ...) so
that the summary describes the whole generative model.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax.checkpoint import restore_earlier_stage
from genjax.config import check
from genjax.data import to_model_batch
from genjax.models import vqvae
from genjax.nn.precision import compute_dtype
from genjax.nn.transformer import CausalTransformer, sample_tokens
from genjax.train.family import Family
from genjax.train.optim import apply_gradients


def stage_config(config, vqvae_workdir: str, vqvae_step: int):
    """The prior's config from a two-stage experiment config: the prior_* fields become the engine's.

    A prior fitted to an earlier step of the VQ-VAE is stale: the config then asks for a fresh start.
    """
    prior = config.copy_and_resolve_references()
    prior.model = "vqvae_prior"
    prior.num_steps = config.prior_num_steps
    prior.learning_rate = config.prior_learning_rate
    prior.vqvae_workdir = vqvae_workdir
    prior.vqvae_step = vqvae_step
    return prior


def validate(config) -> None:
    vqvae.validate(config)
    for field in ("prior_width", "prior_layers", "prior_heads"):
        check(config[field] > 0, f"{field} must be positive, got {config[field]}")
    check(
        config.prior_width % config.prior_heads == 0,
        f"prior_width {config.prior_width} must be a multiple of prior_heads {config.prior_heads}",
    )
    check(bool(config.get("vqvae_workdir")), "vqvae_prior needs config.vqvae_workdir, the run directory of a trained VQ-VAE")


def load_vqvae(config, dataset):
    """The trained VQ-VAE's params at step config.vqvae_step (latest if 0) of config.vqvae_workdir."""
    example = to_model_batch(dataset.take(np.arange(min(config.batch_size, dataset.num_examples))))
    family = vqvae.make_family(config, dataset)
    state = restore_earlier_stage(
        config.vqvae_workdir, config.vqvae_step, family, example, "vqvae", "VQ-VAE", "train the VQ-VAE first", "vqvae_mnist"
    )
    return state["params"]


def make_family(config, dataset) -> Family:
    model = vqvae.build_model(config, dataset.example_shape)
    h, w = vqvae.code_map_shape(config, dataset.example_shape)
    prior = CausalTransformer(
        config.num_codes, h * w, config.prior_width, config.prior_layers, config.prior_heads, dtype=compute_dtype(config)
    )
    tx = optax.adam(config.learning_rate)
    frozen = load_vqvae(config, dataset)
    vqvae_family = vqvae.make_family(config, dataset)

    def codes(state, images):
        """The frozen VQ-VAE's code indices, flattened in raster order: int32 [B, h * w]."""
        return vqvae.encode_indices(model, state["vqvae"], images).reshape(len(images), h * w)

    def code_nll(params, tokens):
        logits = prior.apply({"params": params}, tokens)
        return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, tokens), axis=-1)

    def init(key, batch):
        params = prior.init(key, jnp.zeros((len(batch["image"]), h * w), jnp.int32))["params"]
        return {"params": params, "opt_state": tx.init(params), "vqvae": frozen}

    def train_step(state, batch, key):
        tokens = codes(state, batch["image"])
        loss, grads = jax.value_and_grad(lambda p: jnp.mean(code_nll(p, tokens)))(state["params"])
        params, opt_state = apply_gradients(tx, state["params"], state["opt_state"], grads)
        return {**state, "params": params, "opt_state": opt_state}, {"loss": loss}

    def eval_step(state, batch, key):
        vqvae_metrics = vqvae_family.eval_step({"params": state["vqvae"]}, batch, key)
        return {"code_nll": code_nll(state["params"], codes(state, batch["image"])), **vqvae_metrics}

    def sample(state, key, n):
        tokens = sample_tokens(prior, state["params"], key, n)
        return vqvae.decode_indices(model, state["vqvae"], tokens.reshape(n, h, w))

    def reconstruct(state, batch, key):
        return vqvae_family.reconstruct({"params": state["vqvae"]}, batch, key)

    return Family(
        name="vqvae_prior",
        init=init,
        train_step=train_step,
        eval_step=eval_step,
        sample=sample,
        reconstruct=reconstruct,
        encode=lambda state, batch: vqvae_family.encode({"params": state["vqvae"]}, batch),
        decode=lambda state, z: vqvae_family.decode({"params": state["vqvae"]}, z),
        summarize_eval=vqvae.summarize_eval,
        codebook=True,
        convolutional=True,  # the step encodes its batch with the VQ-VAE's convolutions
    )


RENAMED = vqvae.RENAMED
FIELDS = {
    "prior_num_steps": "training steps of the prior (stage 2)",
    "prior_learning_rate": "Adam step size of the prior",
    "prior_width": "transformer width of the prior",
    "prior_layers": "transformer blocks of the prior",
    "prior_heads": "attention heads of the prior",
    "vqvae_workdir": "run directory of the trained VQ-VAE (set by experiments.vqvae_mnist)",
    "vqvae_step": "checkpoint step of the VQ-VAE to fit the prior to (0: latest; set by experiments.vqvae_mnist)",
}
