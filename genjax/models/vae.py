"""Variational autoencoder (Kingma & Welling 2014) and beta-VAE (Higgins et al. 2017).

Encoder q(z|x) = N(mean(x), diag(exp(log_var(x)))), prior p(z) = N(0, I), decoder p(x|z) Bernoulli (logits)
or Gaussian (learned global scale, as in the calibrated decoders of Rybkin et al. 2021). Training
maximises the beta-weighted evidence lower bound, per image

    loss = E_q[-log p(x|z)] + beta * KL(q(z|x) || p(z))

with one reparameterized sample of z and the analytic KL. Evaluation always reports the true (beta = 1)
bound: neg_elbo = reconstruction + kl, in nats per image, and recon_mse, the squared error per pixel of
the mean reconstruction from the posterior mean.

Evaluation, samples and reconstructions use an exponential moving average of the parameters
(ema <- decay * ema + (1 - decay) * params after every step; Polyak & Juditsky 1992). With decay 0.99 it
lowers the test -ELBO of the default MNIST model by about a nat; decay 0 evaluates the raw parameters.

Config fields: architecture ('mlp' | 'conv'), hidden_sizes (MLP widths), conv_channels, latent_dim,
likelihood ('bernoulli' | 'gaussian'), beta, kl_warmup_steps, ema_decay, sampler ('prior' | 'gmm'),
gmm_components. On the 2-D datasets (points, not pixels) the VAE models batch['point'] and needs the
Gaussian likelihood.

sampler 'gmm' decodes draws of a 10-component full-covariance Gaussian mixture fitted to the posterior
means of every training image after training (ex-post density estimation, Ghosh et al. 2020;
genjax.models.ex_post) instead of z ~ N(0, I): the aggregate posterior a VAE actually decodes well is not
N(0, I) (the "holes" Dai & Wipf 2019 fill with a second VAE). The likelihood bounds still use the prior.
"""

import math
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import ndtri

from genjax import losses, viz
from genjax.config import check, check_choice
from genjax.data import to_model_batch
from genjax.errors import UserError
from genjax.models.ex_post import check_sampler, with_sampler
from genjax.nn import MLP, ConvDecoder, ConvEncoder
from genjax.nn.precision import compute_dtype
from genjax.search import Choice, LogUniform, Uniform
from genjax.train.family import Family, check_batch
from genjax.train.optim import adam, apply_gradients

ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")
SAMPLERS = ("prior", "gmm")


class VAE(nn.Module):
    """Encoder to (mean, log_var) of q(z|x); decoder from z to the parameters of p(x|z).

    The networks compute in `dtype` and return float32: the sample of z, the KL and the likelihood are float32."""

    image_shape: tuple
    latent_dim: int
    architecture: str = "mlp"
    hidden_sizes: tuple = (400,)
    conv_channels: tuple = (32, 64)
    likelihood: str = "bernoulli"
    dtype: Any = jnp.float32

    def setup(self):
        if self.architecture == "mlp":
            self.encoder = MLP(self.hidden_sizes, 2 * self.latent_dim, dtype=self.dtype)
            self.decoder = MLP(tuple(reversed(self.hidden_sizes)), math.prod(self.image_shape), dtype=self.dtype)
        else:
            self.encoder = ConvEncoder(self.conv_channels, 2 * self.latent_dim, dtype=self.dtype)
            self.decoder = ConvDecoder(self.image_shape, tuple(reversed(self.conv_channels)), dtype=self.dtype)
        if self.likelihood == "gaussian":
            self.log_std = self.param("log_std", nn.initializers.zeros, ())

    def encoder_input(self, x, *condition):
        """What the encoder sees: the image itself; a conditional subclass appends its condition."""
        return x

    def decoder_input(self, z, *condition):
        """What the decoder sees: the latent itself; a conditional subclass appends its condition."""
        return z

    def encode(self, x, *condition):
        mean, log_var = jnp.split(self.encoder(self.encoder_input(x, *condition)), 2, axis=-1)
        return mean, log_var

    def decode(self, z, *condition):
        """Decoder output [B, H, W, C]: Bernoulli logits or Gaussian means."""
        return self.decoder(self.decoder_input(z, *condition)).reshape(z.shape[0], *self.image_shape)

    def mean_image(self, z, *condition):
        """E[x | z], the image a latent decodes to."""
        out = self.decode(z, *condition)
        return nn.sigmoid(out) if self.likelihood == "bernoulli" else out

    def negative_log_likelihood(self, out, x):
        if self.likelihood == "bernoulli":
            return losses.bernoulli_nll(out, x)
        return losses.gaussian_nll(out, x, self.log_std)

    def __call__(self, x, key, *condition):
        """Per-example (reconstruction NLL, KL) with one reparameterized sample of z."""
        mean, log_var = self.encode(x, *condition)
        z = losses.reparameterize(key, mean, log_var)
        return self.negative_log_likelihood(self.decode(z, *condition), x), losses.gaussian_kl(mean, log_var)


def validate(config) -> None:
    check_choice(config, "architecture", ARCHITECTURES)
    check_choice(config, "likelihood", LIKELIHOODS)
    check(config.latent_dim > 0, f"latent_dim must be a positive integer, got {config.latent_dim}")
    check(config.beta >= 0 and math.isfinite(config.beta), f"beta must be >= 0, got {config.beta}")
    check(all(w > 0 for w in config.hidden_sizes), f"hidden_sizes must be positive, got {config.hidden_sizes}")
    check(all(w > 0 for w in config.conv_channels), f"conv_channels must be positive, got {config.conv_channels}")
    check(0 <= config.ema_decay < 1, f"ema_decay must be in [0, 1), got {config.ema_decay}")
    sampler = check_sampler(config, SAMPLERS)
    check(config.model != "cvae" or sampler == "prior", "the conditional VAE samples each class from its prior; use sampler 'prior'")
    check(config.get("kl_warmup_steps", 0) >= 0, f"kl_warmup_steps must be >= 0, got {config.get('kl_warmup_steps')}")


def model_fields(config, image_shape) -> dict:
    """The VAE module's fields from a config (shared with conditional subclasses)."""
    return dict(
        image_shape=tuple(image_shape),
        latent_dim=config.latent_dim,
        architecture=config.architecture,
        hidden_sizes=tuple(config.hidden_sizes),
        conv_channels=tuple(config.conv_channels),
        likelihood=config.likelihood,
        dtype=compute_dtype(config),
    )


def build_model(config, image_shape) -> VAE:
    return VAE(**model_fields(config, image_shape))


def make_family(config, dataset) -> Family:
    model = build_model(config, dataset.example_shape)

    def sample(params, key, n):
        z = jax.random.normal(key, (n, config.latent_dim))
        return model.apply({"params": params}, z, method="mean_image")

    def figures(state, test, key, workdir):
        if config.latent_dim == 2:
            write_latent_figures(model, state["ema_params"], test, workdir)

    if dataset.data_key != "image" and config.likelihood != "gaussian":
        raise UserError(f"{dataset.name} holds real-valued points, not pixels in [0, 1]: use --config.likelihood=gaussian")
    family = elbo_family(
        "vae",
        model,
        config,
        condition=lambda batch: (),
        sample_images=sample,
        figures=figures if dataset.data_key == "image" else None,
        data_key=dataset.data_key,
    )
    return with_sampler(family, config, SAMPLERS)  # gmm: the posterior means' mixture in place of N(0, I)


def elbo_family(name, model: VAE, config, condition, sample_images, figures=None, conditional=False, data_key="image") -> Family:
    """The family that trains `model` (a VAE or a conditional subclass) on the beta-weighted ELBO.

    condition(batch) -> the tuple of extra inputs the model's methods take after x or z (() for the VAE);
    sample_images(params, key, n) -> n generated images. The state holds params, the Adam state and the
    parameter average used for eval, samples and reconstructions. data_key: the batch entry it models
    ('image', or 'point' for the 2-D datasets).
    """
    tx = adam(config)
    beta, ema_decay = config.beta, config.ema_decay
    warmup = config.get("kl_warmup_steps", 0)  # then the state counts steps

    def check_images(batch, where):
        check_batch(batch, data_key, model.image_shape, f"{name}.{where}")

    def init(key, batch):
        check_images(batch, "init")
        params_key, sample_key = jax.random.split(key)
        params = model.init(params_key, batch[data_key], sample_key, *condition(batch))["params"]
        state = {"params": params, "opt_state": tx.init(params), "ema_params": params}
        return {**state, "step": jnp.zeros((), jnp.int32)} if warmup else state

    def train_step(state, batch, key):
        check_images(batch, "train_step")

        # KL warm-up (Bowman et al. 2016; Sonderby et al. 2016): the KL weight grows linearly from 0 to beta
        # over the first `warmup` steps, so the decoder learns to use z before the KL term can switch it off
        kl_weight = beta * jnp.minimum(1.0, (state["step"] + 1) / warmup) if warmup else beta

        def loss_fn(params):
            reconstruction, kl = model.apply({"params": params}, batch[data_key], key, *condition(batch))
            loss = jnp.mean(reconstruction + kl_weight * kl)
            return loss, {"loss": loss, "reconstruction": jnp.mean(reconstruction), "kl": jnp.mean(kl)}

        grads, metrics = jax.grad(loss_fn, has_aux=True)(state["params"])
        params, opt_state = apply_gradients(tx, state["params"], state["opt_state"], grads)
        ema_params = optax.incremental_update(params, state["ema_params"], 1 - ema_decay)
        new_state = {"params": params, "opt_state": opt_state, "ema_params": ema_params}
        return ({**new_state, "step": state["step"] + 1} if warmup else new_state), metrics

    def eval_step(state, batch, key):
        check_images(batch, "eval_step")
        variables = {"params": state["ema_params"]}
        reconstruction, kl = model.apply(variables, batch[data_key], key, *condition(batch))
        mean_reconstruction = reconstruct(state, batch, key)
        squared_error = jnp.square(mean_reconstruction - batch[data_key]).reshape(len(kl), -1)
        return {
            "neg_elbo": reconstruction + kl,
            "reconstruction": reconstruction,
            "kl": kl,
            "recon_mse": jnp.mean(squared_error, axis=-1),
        }

    def sample(state, key, n):
        return sample_images(state["ema_params"], key, n)

    def reconstruct(state, batch, key):
        check_images(batch, "reconstruct")
        variables = {"params": state["ema_params"]}
        mean, _ = model.apply(variables, batch[data_key], *condition(batch), method="encode")
        return model.apply(variables, mean, *condition(batch), method="mean_image")

    def importance_log_weights(state, batch, key, num_samples):
        """log p(x, z_k) - log q(z_k | x) for K posterior samples z_k per image: [B, K]."""
        variables = {"params": state["ema_params"]}
        x, extra = batch[data_key], condition(batch)
        mean, log_var = model.apply(variables, x, *extra, method="encode")
        z = losses.reparameterize(key, jnp.broadcast_to(mean, (num_samples, *mean.shape)), log_var)  # [K, B, D]
        flat_z = z.reshape(-1, mean.shape[-1])
        repeated_x = jnp.broadcast_to(x, (num_samples, *x.shape)).reshape(-1, *x.shape[1:])
        repeated_extra = tuple(jnp.broadcast_to(c, (num_samples, *c.shape)).reshape(-1, *c.shape[1:]) for c in extra)
        decoded = model.apply(variables, flat_z, *repeated_extra, method="decode")
        log_px = -model.apply(variables, decoded, repeated_x, method="negative_log_likelihood").reshape(num_samples, -1)
        log_pz = losses.diagonal_gaussian_log_prob(z, jnp.zeros_like(z), jnp.zeros_like(z))
        log_qz = losses.diagonal_gaussian_log_prob(z, mean, log_var)
        return (log_px + log_pz - log_qz).T

    def encode(state, batch):
        """The posterior mean of z."""
        return model.apply({"params": state["ema_params"]}, batch[data_key], method="encode")[0]

    def decode(state, z):
        return model.apply({"params": state["ema_params"]}, z, method="mean_image")

    return Family(
        name=name,
        init=init,
        train_step=train_step,
        eval_step=eval_step,
        sample=sample,
        reconstruct=reconstruct,
        figures=figures,
        progress_metrics=("loss", "kl"),
        importance_log_weights=importance_log_weights,
        conditional=conditional,
        encode=None if conditional else encode,  # a conditional model's codes mean nothing without their labels
        decode=None if conditional else decode,
        convolutional=model.architecture == "conv",
    )


def write_latent_figures(model: VAE, params, test, workdir: str, grid: int = 20) -> None:
    """latent_scatter.png: posterior means of the test images by label; latent_manifold.png: decoded grid.

    The manifold grid places z at the standard-normal quantiles of an evenly spaced grid in (0, 1)^2,
    as in Kingma & Welling (2014), figure 4.
    """
    variables = {"params": params}
    images = to_model_batch(test.arrays)["image"]
    means, _ = jax.jit(lambda x: model.apply(variables, x, method=VAE.encode))(images)
    viz.save_latent_scatter(os.path.join(workdir, "latent_scatter.png"), np.asarray(means), test.arrays["label"])
    quantiles = ndtri(jnp.linspace(0.05, 0.95, grid))
    z = jnp.stack(jnp.meshgrid(quantiles, -quantiles, indexing="xy"), axis=-1).reshape(-1, 2)
    decoded = jax.jit(lambda z: model.apply(variables, z, method=VAE.mean_image))(z)
    viz.save_image_grid(os.path.join(workdir, "latent_manifold.png"), np.asarray(decoded), columns=grid)


def search_space(config) -> dict:
    """The study's ranges: Lucic et al. (2018)'s learning rate and Adam beta1, the KL weight beta (1: the VAE,
    > 1: beta-VAE, Higgins et al. 2017), the code size and the sampler (the prior, or the mixture fitted to
    the codes after training, Ghosh et al. 2020)."""
    return {
        "learning_rate": LogUniform(1e-5, 1e-2),
        "adam_b1": Uniform(0.0, 1.0),
        "beta": LogUniform(0.25, 4.0),
        "latent_dim": Choice((8, 16, 32)),
        "sampler": Choice(SAMPLERS),
    }


FIELDS = {
    "architecture": "encoder/decoder: mlp or conv",
    "hidden_sizes": "MLP hidden widths (decoder mirrors them)",
    "conv_channels": "conv encoder widths (decoder mirrors them)",
    "latent_dim": "dimension of z",
    "likelihood": "decoder p(x|z): bernoulli or gaussian (learned scale)",
    "beta": "weight of the KL term (1: VAE, >1: beta-VAE); eval always reports the beta=1 bound",
    "kl_warmup_steps": "steps over which the KL weight rises linearly from 0 to beta (0: no warm-up)",
    "ema_decay": "decay of the parameter average used for eval and samples (0: raw parameters)",
    "sampler": "prior (z ~ N(0, I)) or gmm (a mixture fitted to the training images' posterior means, Ghosh et al. 2020)",
    "gmm_components": "components of the gmm sampler's full-covariance mixture",
}
