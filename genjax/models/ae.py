"""Deterministic autoencoder, denoising autoencoder, and sampling by ex-post density estimation.

An encoder maps an image to a code z = f(x), a decoder maps it back; per image the loss is

    loss = reconstruction(x, g(f(x~)))        reconstruction_loss 'bce' (Bernoulli logits) or 'mse' (squared error of sigmoid)

where x~ = x for a plain autoencoder and, for a denoising one (Vincent et al. 2008), x + noise_std * eps
(Gaussian noise) or x with a random mask_fraction of its pixels set to 0 (masking noise). The noise
corrupts the encoder input only: the target is always the clean image.

A plain autoencoder has no sampler. Following Ghosh et al. (2020, "From Variational to Deterministic
Autoencoders", section 4, ex-post density estimation) the family fits a full-covariance Gaussian to the
codes of the training images and decodes z ~ N(mu, Sigma). The moments are exponential moving averages
updated by every train step from the codes of the clean batch (the encoder keeps changing, so old codes
are forgotten):

    w  <- d * w  + (1 - d)                    m  <- d * m  + (1 - d) * mean_batch(z)
    S  <- d * S  + (1 - d) * mean_batch(z z^T)
    mu = m / w,   Sigma = S / w - mu mu^T      (w removes the bias of starting at zero, as in Adam)

so mu and Sigma are numpy's weighted mean and (biased) covariance of every code seen, those of step t
weighted by (1 - d) d^(T - t).

Evaluation reports the reconstruction loss of clean test images per image and recon_mse, the squared
error per pixel (the same name and definition as the VAE's, so the two line up); a denoising autoencoder
also reports denoise_mse, the squared error per pixel between the clean image and the reconstruction of
its corrupted version. (Trained on corrupted inputs only, it reconstructs clean inputs less well than a
plain autoencoder: with masking noise they are brighter than anything it saw.)

sampler 'gmm' samples from a 10-component full-covariance Gaussian mixture fitted to the codes of every
training image instead (Ghosh et al. 2020's GMM variant; genjax.models.ex_post); 'gaussian' is the above.

Config fields: architecture ('mlp' | 'conv'), hidden_sizes, conv_channels, latent_dim, reconstruction_loss ('bce' |
'mse'), noise ('none' | 'gaussian' | 'mask'), noise_std, mask_fraction, code_stats_decay, sampler
('gaussian' | 'gmm'), gmm_components.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax import losses
from genjax.config import check, check_choice
from genjax.models.ex_post import check_sampler, with_sampler
from genjax.nn import MLP, ConvDecoder, ConvEncoder
from genjax.nn.precision import compute_dtype
from genjax.search import Choice, LogUniform, Uniform
from genjax.train.family import Family
from genjax.train.optim import adam, apply_gradients

ARCHITECTURES = ("mlp", "conv")
NOISES = ("none", "gaussian", "mask")
SAMPLERS = ("gaussian", "gmm")  # the moving Gaussian of the codes, or a mixture fitted to them after training


class Autoencoder(nn.Module):
    """Encoder to a code z [B, latent_dim]; decoder from z to image logits [B, H, W, C]; both float32,
    computed in `dtype`."""

    image_shape: tuple
    latent_dim: int
    architecture: str = "mlp"
    hidden_sizes: tuple = (400,)
    conv_channels: tuple = (32, 64)
    dtype: Any = jnp.float32

    def setup(self):
        if self.architecture == "mlp":
            self.encoder = MLP(self.hidden_sizes, self.latent_dim, dtype=self.dtype)
            self.decoder = MLP(tuple(reversed(self.hidden_sizes)), math.prod(self.image_shape), dtype=self.dtype)
        else:
            self.encoder = ConvEncoder(self.conv_channels, self.latent_dim, dtype=self.dtype)
            self.decoder = ConvDecoder(self.image_shape, tuple(reversed(self.conv_channels)), dtype=self.dtype)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z).reshape(z.shape[0], *self.image_shape)

    def __call__(self, x):
        return self.decode(self.encode(x))


def corrupt(key: jax.Array, x: jax.Array, noise: str, noise_std: float, mask_fraction: float) -> jax.Array:
    """The denoising autoencoder's input: x itself, x + noise_std * eps, or x with round(mask_fraction * H * W)
    pixels per image (all channels) set to 0, chosen uniformly at random with `key`."""
    if noise == "gaussian":
        return x + noise_std * jax.random.normal(key, x.shape, x.dtype)
    if noise == "mask":
        batch, height, width = x.shape[:3]
        masked = round(mask_fraction * height * width)
        if masked == 0:
            return x
        scores = jax.random.uniform(key, (batch, height * width))
        cutoff = jnp.sort(scores, axis=1)[:, masked - 1 : masked]  # the masked-th smallest score of each image
        keep = (scores > cutoff).reshape(batch, height, width, 1)
        return jnp.where(keep, x, 0.0)
    return x


def init_code_stats(latent_dim: int) -> dict:
    return {"weight": jnp.zeros(()), "mean": jnp.zeros(latent_dim), "second_moment": jnp.zeros((latent_dim, latent_dim))}


def update_code_stats(stats: dict, z: jax.Array, decay: float) -> dict:
    """One moving-average step of the code moments with the codes z [B, latent_dim] (module docstring)."""
    z = jax.lax.stop_gradient(z)
    batch_second_moment = z.T @ z / len(z)
    return {
        "weight": decay * stats["weight"] + (1 - decay),
        "mean": decay * stats["mean"] + (1 - decay) * jnp.mean(z, axis=0),
        "second_moment": decay * stats["second_moment"] + (1 - decay) * batch_second_moment,
    }


def code_gaussian(stats: dict) -> tuple[jax.Array, jax.Array]:
    """(mu, Sigma) of the ex-post Gaussian; mean 0 and covariance 0 before the first step."""
    weight = jnp.maximum(stats["weight"], 1e-12)
    mean = stats["mean"] / weight
    return mean, stats["second_moment"] / weight - jnp.outer(mean, mean)


def validate(config) -> None:
    check_choice(config, "architecture", ARCHITECTURES)
    check_choice(config, "reconstruction_loss", losses.RECONSTRUCTION_LOSSES)
    check_choice(config, "noise", NOISES)
    check(config.latent_dim > 0, f"latent_dim must be a positive integer, got {config.latent_dim}")
    check(all(w > 0 for w in config.hidden_sizes), f"hidden_sizes must be positive, got {config.hidden_sizes}")
    check(all(w > 0 for w in config.conv_channels), f"conv_channels must be positive, got {config.conv_channels}")
    check(math.isfinite(config.noise_std) and config.noise_std >= 0, f"noise_std must be >= 0, got {config.noise_std}")
    check(0 <= config.mask_fraction < 1, f"mask_fraction must be in [0, 1), got {config.mask_fraction}")
    check(0 <= config.code_stats_decay < 1, f"code_stats_decay must be in [0, 1), got {config.code_stats_decay}")
    check_sampler(config, SAMPLERS)


def build_model(config, image_shape) -> Autoencoder:
    return Autoencoder(
        image_shape=tuple(image_shape),
        latent_dim=config.latent_dim,
        architecture=config.architecture,
        hidden_sizes=tuple(config.hidden_sizes),
        conv_channels=tuple(config.conv_channels),
        dtype=compute_dtype(config),
    )


def make_family(config, dataset) -> Family:
    model = build_model(config, dataset.example_shape)
    tx = adam(config)
    loss_kind, decay = config.reconstruction_loss, config.code_stats_decay

    def init(key, batch):
        params = model.init(key, batch["image"])["params"]
        return {"params": params, "opt_state": tx.init(params), "code_stats": init_code_stats(config.latent_dim)}

    def train_step(state, batch, key):
        x = batch["image"]
        noisy = corrupt(key, x, config.noise, config.noise_std, config.mask_fraction)

        def loss_fn(params):
            z = model.apply({"params": params}, noisy, method=Autoencoder.encode)
            logits = model.apply({"params": params}, z, method=Autoencoder.decode)
            loss = jnp.mean(losses.image_reconstruction_loss(loss_kind, logits, x))
            return loss, z

        (loss, z), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        if config.noise != "none":  # the sampler decodes codes of clean images
            z = model.apply({"params": state["params"]}, x, method=Autoencoder.encode)
        params, opt_state = apply_gradients(tx, state["params"], state["opt_state"], grads)
        stats = update_code_stats(state["code_stats"], z, decay)
        return {"params": params, "opt_state": opt_state, "code_stats": stats}, {"loss": loss}

    def eval_step(state, batch, key):
        x = batch["image"]

        def logits_and_pixel_mse(inputs):
            logits = model.apply({"params": state["params"]}, inputs)
            return logits, jnp.mean(jnp.square(jax.nn.sigmoid(logits) - x).reshape(len(x), -1), axis=-1)

        logits, recon_mse = logits_and_pixel_mse(x)
        metrics = {"reconstruction": losses.image_reconstruction_loss(loss_kind, logits, x), "recon_mse": recon_mse}
        if config.noise != "none":  # how well corrupted test images are restored
            metrics["denoise_mse"] = logits_and_pixel_mse(corrupt(key, x, config.noise, config.noise_std, config.mask_fraction))[1]
        return metrics

    def sample(state, key, n):
        mean, cov = code_gaussian(state["code_stats"])
        z = jax.random.multivariate_normal(key, mean, cov, (n,), method="svd")  # svd: Sigma is only semi-definite
        return jax.nn.sigmoid(model.apply({"params": state["params"]}, z, method=Autoencoder.decode))

    def reconstruct(state, batch, key):
        return jax.nn.sigmoid(model.apply({"params": state["params"]}, batch["image"]))

    def encode(state, batch):
        return model.apply({"params": state["params"]}, batch["image"], method=Autoencoder.encode)

    def decode(state, z):
        return jax.nn.sigmoid(model.apply({"params": state["params"]}, z, method=Autoencoder.decode))

    family = Family(
        name="ae",
        init=init,
        train_step=train_step,
        eval_step=eval_step,
        sample=sample,
        reconstruct=reconstruct,
        encode=encode,
        decode=decode,
        convolutional=config.architecture == "conv",
    )
    return with_sampler(family, config, SAMPLERS)


RENAMED = {"loss": "reconstruction_loss"}  # one meaning per field: `loss` was also the GAN's adversarial loss


def search_space(config) -> dict:
    """The study's ranges: Lucic et al. (2018)'s learning rate and Adam beta1, the code size, the input noise
    that makes it a denoising AE (Vincent et al. 2008) and the sampler (the codes' Gaussian, or the mixture
    fitted to them after training, Ghosh et al. 2020)."""
    return {
        "learning_rate": LogUniform(1e-5, 1e-2),
        "adam_b1": Uniform(0.0, 1.0),
        "sampler": Choice(SAMPLERS),
        "latent_dim": Choice((8, 16, 32)),
        "noise": Choice(("none", "gaussian")),
        "noise_std": Uniform(0.1, 0.5),
    }


FIELDS = {
    "architecture": "encoder/decoder: mlp or conv",
    "hidden_sizes": "MLP hidden widths (decoder mirrors them)",
    "conv_channels": "conv encoder widths (decoder mirrors them)",
    "latent_dim": "dimension of the code z",
    "reconstruction_loss": "bce (Bernoulli logits) or mse (squared error of the sigmoid)",
    "noise": "denoising input corruption: none, gaussian or mask",
    "noise_std": "standard deviation of the gaussian input noise",
    "mask_fraction": "fraction of pixels set to 0 by the mask noise",
    "code_stats_decay": "decay of the moving code mean and covariance that samples are drawn from",
    "sampler": "gaussian (the moving code Gaussian) or gmm (a mixture fitted to the training codes, Ghosh et al. 2020)",
    "gmm_components": "components of the gmm sampler's full-covariance mixture",
}
