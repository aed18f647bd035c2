"""VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning").

A conv encoder maps an image to a map of vectors z_e(x) [h, w, D] (7x7 for MNIST); each is replaced by its
nearest code e_k of a codebook [K, D]; a conv decoder maps the quantized map back to the image. Per image

    loss = reconstruction(x, decoder(z_q)) + ||sg[z_e] - e||^2 + commitment_weight * ||z_e - sg[e]||^2

with straight-through gradients from z_q to z_e (genjax.losses). With codebook_update='ema' the codebook
term is dropped and the codes follow exponential moving averages of their assigned encoder outputs with
Laplace smoothing (appendix A.1; Razavi et al. 2019); with 'loss' the optimizer moves them. Codes whose
running usage (assignments per batch, EMA) drops below restart_threshold are restarted from random encoder
outputs of the batch (Dhariwal et al. 2020); codebook_init='kmeans' starts the codebook at k-means centers
of the encoder outputs of the first batch (Lloyd's algorithm, kmeans_iterations steps).

Evaluation reports the reconstruction loss per image, recon_mse (squared error per pixel of the
reconstruction, as the VAE and the AE report it), the commitment term, and from the test-set code usage
the codebook perplexity exp(entropy) (K when all codes are used equally) and the fraction of codes used.

This family alone has no learned prior: `sample` decodes code maps whose codes are drawn independently at
each position from the training usage frequencies, the baseline that the autoregressive prior of
genjax.models.vqvae_prior replaces (`python -m experiments.vqvae_mnist` trains both).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax import losses
from genjax.config import check, check_choice
from genjax.errors import UserError
from genjax.nn import vector_quantizer as vq
from genjax.nn.precision import compute_dtype
from genjax.nn.residual_conv import MapDecoder, MapEncoder
from genjax.search import LogUniform, Uniform
from genjax.train.family import Family
from genjax.train.optim import adam, apply_gradients

CODEBOOK_UPDATES = ("ema", "loss")
CODEBOOK_INITS = ("uniform", "kmeans")


class VQVAE(nn.Module):
    """The encoder to code vectors and the decoder from (quantized) code vectors; the codebook lives apart.

    Both compute in `dtype` and return float32, so quantization and the codebook statistics are float32."""

    colors: int
    channels: tuple = (32, 64)
    code_dim: int = 16
    residual_blocks: int = 2
    residual_hidden: int = 32
    dtype: Any = jnp.float32

    def setup(self):
        self.encoder = MapEncoder(self.channels, self.code_dim, self.residual_blocks, self.residual_hidden, self.dtype)
        self.decoder = MapDecoder(self.colors, tuple(reversed(self.channels)), self.residual_blocks, self.residual_hidden, self.dtype)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        """Image logits [B, H, W, C] from code vectors [B, h, w, D]."""
        return self.decoder(z)

    def __call__(self, x):
        return self.decode(self.encode(x))


def validate(config) -> None:
    check_choice(config, "codebook_update", CODEBOOK_UPDATES)
    check_choice(config, "codebook_init", CODEBOOK_INITS)
    check_choice(config, "reconstruction_loss", losses.RECONSTRUCTION_LOSSES)
    check(
        len(config.conv_channels) > 0 and all(w > 0 for w in config.conv_channels),
        f"conv_channels must be positive widths, got {config.conv_channels}",
    )
    check(config.residual_blocks >= 0, f"residual_blocks must be >= 0, got {config.residual_blocks}")
    check(config.residual_hidden > 0, f"residual_hidden must be positive, got {config.residual_hidden}")
    check(config.num_codes >= 2, f"num_codes must be at least 2, got {config.num_codes}")
    check(config.code_dim > 0, f"code_dim must be positive, got {config.code_dim}")
    check(config.commitment_weight >= 0, f"commitment_weight must be >= 0, got {config.commitment_weight}")
    check(0 < config.codebook_decay < 1, f"codebook_decay must be in (0, 1), got {config.codebook_decay}")
    check(config.codebook_eps > 0, f"codebook_eps must be positive, got {config.codebook_eps}")
    check(config.restart_threshold >= 0, f"restart_threshold must be >= 0 (0 turns restarts off), got {config.restart_threshold}")
    check(config.kmeans_iterations >= 0, f"kmeans_iterations must be >= 0, got {config.kmeans_iterations}")


def build_model(config, image_shape) -> VQVAE:
    height, width, colors = image_shape
    scale = 2 ** len(config.conv_channels)
    if height % scale or width % scale:
        raise UserError(f"{height}x{width} images are not divisible by 2^{len(config.conv_channels)}: use fewer conv_channels")
    return VQVAE(
        colors, tuple(config.conv_channels), config.code_dim, config.residual_blocks, config.residual_hidden, compute_dtype(config)
    )


def code_map_shape(config, image_shape) -> tuple[int, int]:
    """(h, w) of the code map of one image."""
    scale = 2 ** len(config.conv_channels)
    return image_shape[0] // scale, image_shape[1] // scale


def encode_indices(model: VQVAE, params, images: jax.Array) -> jax.Array:
    """Code indices int32 [B, h, w] of images [B, H, W, C]."""
    z = model.apply({"params": params["net"]}, images, method=VQVAE.encode)
    return vq.nearest_codes(z, params["codebook"])


def decode_indices(model: VQVAE, params, indices: jax.Array) -> jax.Array:
    """Images in [0, 1] [B, H, W, C] from code indices [B, h, w]."""
    logits = model.apply({"params": params["net"]}, params["codebook"][indices], method=VQVAE.decode)
    return jax.nn.sigmoid(logits)


def summarize_eval(means: dict) -> dict:
    """Test-set means to scalars: the mean code usage [K] becomes perplexity and used_fraction."""
    usage = means["code_usage"]
    scalars = {name: value for name, value in means.items() if name != "code_usage"}
    return {**scalars, "perplexity": vq.perplexity(usage), "used_fraction": jnp.mean(usage > 0)}


def make_family(config, dataset) -> Family:
    model = build_model(config, dataset.example_shape)
    tx = adam(config)
    num_codes, commitment_weight, loss_kind = config.num_codes, config.commitment_weight, config.reconstruction_loss
    use_ema = config.codebook_update == "ema"
    decay, eps, threshold = config.codebook_decay, config.codebook_eps, config.restart_threshold

    def trained(params):
        """What the optimizer updates: everything, or all but the codebook when EMA moves it."""
        return params["net"] if use_ema else params

    def init(key, batch):
        net_key, code_key = jax.random.split(key)
        net = model.init(net_key, batch["image"])["params"]
        if config.codebook_init == "kmeans":
            z = model.apply({"params": net}, batch["image"], method=VQVAE.encode)
            codebook = vq.kmeans(code_key, z.reshape(-1, config.code_dim), num_codes, config.kmeans_iterations)
        else:
            codebook = jax.random.uniform(code_key, (num_codes, config.code_dim), minval=-1 / num_codes, maxval=1 / num_codes)
        params = {"net": net, "codebook": codebook}
        state = {"params": params, "opt_state": tx.init(trained(params)), "code_usage": jnp.ones(num_codes)}
        if use_ema:
            state["code_sum"] = codebook  # usage 1 times each code, so that code_sum / usage = codebook
        return state

    def forward(params, x):
        """(per-example loss terms, encoder outputs z, code indices)."""
        z = model.apply({"params": params["net"]}, x, method=VQVAE.encode)
        quantized, indices = vq.quantize(z, params["codebook"])
        logits = model.apply({"params": params["net"]}, losses.straight_through(z, quantized), method=VQVAE.decode)
        terms = {
            "reconstruction": losses.image_reconstruction_loss(loss_kind, logits, x),
            "commitment": losses.vq_commitment_loss(z, quantized),
            "codebook": losses.vq_codebook_loss(z, quantized),
        }
        return terms, z, indices, logits

    def train_step(state, batch, key):
        def loss_fn(params):
            terms, z, indices, _ = forward(params, batch["image"])
            loss = terms["reconstruction"] + commitment_weight * terms["commitment"] + (0.0 if use_ema else terms["codebook"])
            metrics = {
                "loss": jnp.mean(loss),
                "reconstruction": jnp.mean(terms["reconstruction"]),
                "commitment": jnp.mean(terms["commitment"]),
            }
            return metrics["loss"], (metrics, z, indices)

        grads, (metrics, z, indices) = jax.grad(loss_fn, has_aux=True)(state["params"])
        updated, opt_state = apply_gradients(tx, trained(state["params"]), state["opt_state"], trained(grads))
        params = {**state["params"], "net": updated} if use_ema else updated
        counts, sums = vq.code_statistics(z, indices, num_codes)
        new_state = {"opt_state": opt_state}
        if use_ema:
            usage, code_sum, codebook = vq.ema_codebook(state["code_usage"], state["code_sum"], counts, sums, decay, eps)
        else:
            usage, codebook = decay * state["code_usage"] + (1 - decay) * counts, params["codebook"]
        codebook, dead = vq.restart_dead_codes(key, codebook, usage, z, threshold)
        usage = jnp.where(dead, threshold, usage)  # a restarted code starts at the threshold: one idle step restarts it again
        if use_ema:
            new_state["code_sum"] = jnp.where(dead[:, None], codebook * usage[:, None], code_sum)
        new_state.update(params={**params, "codebook": codebook}, code_usage=usage)
        metrics.update(perplexity=vq.perplexity(counts), restarted=jnp.sum(dead).astype(jnp.float32))
        return new_state, metrics

    def eval_step(state, batch, key):
        x = batch["image"]
        terms, _, indices, logits = forward(state["params"], x)
        squared_error = jnp.square(jax.nn.sigmoid(logits) - x).reshape(len(x), -1)
        usage = jax.nn.one_hot(indices.reshape(len(x), -1), num_codes).mean(axis=1)
        return {
            "reconstruction": terms["reconstruction"],
            "recon_mse": jnp.mean(squared_error, axis=-1),
            "commitment": terms["commitment"],
            "code_usage": usage,
        }

    def sample(state, key, n):
        h, w = code_map_shape(config, dataset.example_shape)
        logits = jnp.log(state["code_usage"] / jnp.sum(state["code_usage"]))
        indices = jax.random.categorical(key, logits, shape=(n, h, w)).astype(jnp.int32)
        return decode_indices(model, state["params"], indices)

    def reconstruct(state, batch, key):
        return decode_indices(model, state["params"], encode_indices(model, state["params"], batch["image"]))

    def encode(state, batch):
        """The encoder's continuous outputs z_e [B, h, w, code_dim], before quantization."""
        return model.apply({"params": state["params"]["net"]}, batch["image"], method=VQVAE.encode)

    def decode(state, z):
        """Quantize z to its nearest codes, then decode them."""
        return decode_indices(model, state["params"], vq.nearest_codes(z, state["params"]["codebook"]))

    return Family(
        name="vqvae",
        init=init,
        train_step=train_step,
        eval_step=eval_step,
        sample=sample,
        reconstruct=reconstruct,
        encode=encode,
        decode=decode,
        summarize_eval=summarize_eval,
        progress_metrics=("loss", "perplexity"),
        codebook=True,
        convolutional=True,
    )


# one meaning per field: `beta` is the VAE's KL weight, `loss` was also the GAN's adversarial loss
RENAMED = {"beta": "commitment_weight", "loss": "reconstruction_loss"}


def search_space(config) -> dict:
    """The study's ranges: Lucic et al. (2018)'s learning rate and Adam beta1 (the VQ-VAE's; its prior trains
    with Adam's defaults), the commitment weight beta (0.25 in van den Oord et al. 2017) and the decay of the
    EMA codebook."""
    return {
        "learning_rate": LogUniform(1e-5, 1e-2),
        "adam_b1": Uniform(0.0, 1.0),
        "commitment_weight": LogUniform(0.05, 2.0),
        "codebook_decay": Uniform(0.9, 0.999),
    }


FIELDS = {
    "conv_channels": "encoder widths of the stride-2 convolutions (decoder mirrors them); 2 give a 7x7 code map",
    "residual_blocks": "residual blocks after the encoder's and before the decoder's convolutions",
    "residual_hidden": "hidden width of the residual blocks",
    "num_codes": "codebook size K",
    "code_dim": "code vector dimension D",
    "commitment_weight": "weight beta of the commitment term",
    "reconstruction_loss": "bce (Bernoulli logits) or mse (squared error of the sigmoid)",
    "codebook_update": "ema (moving averages, Laplace smoothing) or loss (codebook term, optimizer)",
    "codebook_decay": "decay of the codebook and usage moving averages",
    "codebook_eps": "Laplace smoothing of the EMA cluster sizes",
    "restart_threshold": "restart codes used fewer times per batch (EMA) than this; 0: never",
    "codebook_init": "uniform (+-1/K) or kmeans (on the encoder outputs of the first batch)",
    "kmeans_iterations": "Lloyd iterations of the k-means init",
}
