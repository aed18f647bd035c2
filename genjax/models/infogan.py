"""InfoGAN (Chen et al. 2016, "InfoGAN: Interpretable Representation Learning by Information Maximizing
Generative Adversarial Nets"): a GAN whose generator also takes latent codes c, and an auxiliary head Q on
the discriminator's body that recovers c from the generated image.

G(z, c) takes the noise z ~ N(0, I) [latent_dim] beside the codes c = (c_cat, c_cont),
    c_cat  ~ Cat(K), uniform, one-hot [K]       (num_categories; 10 for MNIST's digits)
    c_cont ~ U(-1, 1)^J                         (num_continuous; 2 for MNIST: the paper finds width and rotation)
on DCGAN's networks (genjax.models.gan_nets). Q(c | x) is a categorical distribution (logits) for c_cat and
a factored Gaussian for c_cont, a mean and a log standard deviation per code (the paper's choice for
continuous codes). Q shares every layer of D but its last: DCGAN's convolutional body
(gan_nets.conv_features), then its own Dense(q_hidden)-BatchNorm-LeakyReLU-Dense, the paper's Q for MNIST.

The variational lower bound on the mutual information I(c; G(z, c)) (the paper's lemma 5.1),
    L_I(G, Q) = E_{c ~ p(c), x = G(z, c)} [log Q(c | x)] + H(c) <= I(c; G(z, c)),
splits into one bound per kind of code (the codes are independent and Q factored):
    info_categorical = E[log softmax(logits)_{c_cat}] + log K                (at most log K)
    info_continuous  = E[sum_j log N(c_j; mu_j, sigma_j^2)] + J log 2        (H(U(-1, 1)) = log 2)
The objective min_{G,Q} max_D V(D, G) - lambda L_I(G, Q) adds
    -(info_weight_categorical * info_categorical + info_weight_continuous * info_continuous)
(the paper's lambda: 1 for discrete codes, smaller for continuous ones, 0.1 here) to D's loss, where it
trains Q's head and the body Q shares with D, and to G's loss, where it trains G through its images.

G's Adam steps are g_learning_rate_scale times larger than D's, the paper's 1e-3 against 2e-4 for MNIST:
with both at 2e-4, Q learned to read the category from images in which it changed nothing visible, and the
code matched no digit class (the README's InfoGAN section has the measurement).

One train_step is gan.py's, with these terms added: D then G on one batch, G's forward pass kept by jax.vjp
for G's update, two Adam optimizers, BatchNorm statistics threaded through the state. D's call on the real
batch skips Q, so Q's BatchNorm statistics are those of generated images, the only ones Q reads.

Samples for the standard metrics draw the codes from p(c) as they draw z, so that their Frechet distance and
KID compare with the other GANs'. eval_step reports gan.py's d_real, d_fake, d_loss and g_loss, the two
bounds on fresh samples, and two tables p(k, y) of the categorical code against the digit classes, each
summarized as purity and normalized mutual information (genjax.metrics.codes):
    code_purity, code_nmi  the generator's: per test example one noise z and continuous code make the images
                           of all K categories, which the metric classifier of genjax.evaluate labels
                           (genjax.metrics.classifier: trained once on the full training split, then cached)
    q_purity, q_nmi        Q's: its most likely category for each real test digit against the digit's label,
                           the paper's measurement (5% error on MNIST)
Which category comes to mean which digit is the model's choice; the metrics are invariant to it.
"""

import functools
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax import data, viz
from genjax.config import check, check_choice, check_positive
from genjax.metrics.classifier import cache_dir, load_classifier
from genjax.metrics.codes import code_class_agreement
from genjax.models import gan
from genjax.models.gan_nets import BATCH_NORM_MOMENTUM, NORMS, ConvGenerator, conv_features, leaky_relu, score
from genjax.nn.precision import compute_dtype, to_float32
from genjax.search import LogUniform, Uniform
from genjax.train.family import Family
from genjax.train.optim import adam, apply_gradients

# WGAN-GP's loss needs its gradient penalty and 5 critic steps per G step, which this family's step does not take
LOSSES = {name: terms for name, terms in gan.LOSSES.items() if name != "wasserstein_gp"}
# the paper's figure 2 varies each continuous code over [-2, 2], past the range [-1, 1] it was trained on
FIGURE_VALUES = np.linspace(-2.0, 2.0, 10)
# eval_step's joint tables p(k, y) -> the prefix of their metrics (genjax.metrics.codes)
JOINTS = {"code": "code_class_joint", "q": "q_class_joint"}


def defaults() -> dict:
    """The InfoGAN fields with their defaults: the paper's codes, noise size and weights, DCGAN's networks."""
    return {
        "model": "infogan",
        "adversarial_loss": "non_saturating",
        "latent_dim": 62,
        "num_categories": 10,
        "num_continuous": 2,
        "info_weight_categorical": 1.0,
        "info_weight_continuous": 0.1,
        "conv_channels": (32, 64),
        "upsample": "subpixel",
        "discriminator_norm": "batch",
        "q_hidden": 128,
        "learning_rate": 2e-4,
        "g_learning_rate_scale": 5.0,
        "adam_b1": 0.5,
        "adam_b2": 0.999,
    }


def validate(config) -> None:
    check(
        config.adversarial_loss != "wasserstein_gp",
        "InfoGAN here takes one D step per G step and no gradient penalty, which wasserstein_gp needs; "
        f"use adversarial_loss {', '.join(LOSSES)}",
    )
    check_choice(config, "adversarial_loss", tuple(LOSSES))
    check_choice(config, "discriminator_norm", NORMS)
    check_choice(config, "upsample", gan.UPSAMPLES)
    check(
        config.dataset not in data.TOY_DATASETS,
        f"InfoGAN's networks are convolutional and '{config.dataset}' is 2-D points; use an image dataset",
    )
    check(config.latent_dim > 0, f"latent_dim must be a positive integer, got {config.latent_dim}")
    check(
        config.num_categories >= 2, f"num_categories must be at least 2 (one category carries no information), got {config.num_categories}"
    )
    check(config.num_continuous >= 0, f"num_continuous must be >= 0, got {config.num_continuous}")
    check(config.q_hidden > 0, f"q_hidden must be a positive width, got {config.q_hidden}")
    check(
        len(config.conv_channels) > 0 and all(w > 0 for w in config.conv_channels),
        f"conv_channels must be positive widths, got {config.conv_channels}",
    )
    for field in ("info_weight_categorical", "info_weight_continuous"):
        check(np.isfinite(config[field]) and config[field] >= 0, f"{field} must be a number >= 0, got {config[field]}")
    check_positive(config, "g_learning_rate_scale")


class InfoDiscriminator(nn.Module):
    """D and Q on one body: images [B, H, W, C] -> (D's scores [B], Q's (logits [B, K], means [B, J],
    log_stds [B, J]), or None with with_q False)."""

    channels: Sequence[int]
    norm: str
    num_categories: int
    num_continuous: int
    q_hidden: int
    dtype: Any = jnp.float32  # the compute dtype (genjax.nn.precision); Q's outputs are float32

    @nn.compact
    def __call__(self, x: jax.Array, with_q: bool = True, train: bool = False):
        features = conv_features(x, self.channels, self.norm, train, self.dtype)
        scores = score(features, None, 0, self.norm, train, self.dtype)
        if not with_q:
            return scores, None
        h = nn.Dense(self.q_hidden, dtype=self.dtype, name="q_hidden")(features)
        h = leaky_relu(nn.BatchNorm(use_running_average=not train, momentum=BATCH_NORM_MOMENTUM, dtype=self.dtype, name="q_norm")(h))
        out = to_float32(nn.Dense(self.num_categories + 2 * self.num_continuous, dtype=self.dtype, name="q_out")(h))
        logits, means, log_stds = jnp.split(out, [self.num_categories, self.num_categories + self.num_continuous], axis=-1)
        return scores, (logits, means, log_stds)


def draw_codes(key: jax.Array, n: int, num_categories: int, num_continuous: int) -> tuple[jax.Array, jax.Array]:
    """c ~ p(c): categories [n] uniform over num_categories, continuous codes [n, num_continuous] uniform on [-1, 1)."""
    category_key, continuous_key = jax.random.split(key)
    categories = jax.random.randint(category_key, (n,), 0, num_categories)
    return categories, jax.random.uniform(continuous_key, (n, num_continuous), minval=-1.0, maxval=1.0)


def generator_input(z: jax.Array, categories: jax.Array, continuous: jax.Array, num_categories: int) -> jax.Array:
    """G's input [B, latent_dim + K + J]: the noise, the one-hot category and the continuous codes."""
    return jnp.concatenate([z, jax.nn.one_hot(categories, num_categories, dtype=z.dtype), continuous], axis=-1)


def information_bounds(q: tuple, categories: jax.Array, continuous: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per example, the terms of the two mutual-information bounds (module docstring), in nats:
    log Q(c_cat | x) + log K and sum_j log N(c_j; mu_j, sigma_j^2) + J log 2."""
    logits, means, log_stds = q
    log_q_category = jnp.take_along_axis(jax.nn.log_softmax(logits), categories[:, None], axis=-1)[:, 0]
    log_q_continuous = -0.5 * ((continuous - means) * jnp.exp(-log_stds)) ** 2 - log_stds - 0.5 * jnp.log(2 * jnp.pi)
    return log_q_category + jnp.log(logits.shape[-1]), jnp.sum(log_q_continuous + jnp.log(2.0), axis=-1)


def one_hot_pairs(codes: jax.Array, num_codes: int, labels: jax.Array, num_classes: int) -> jax.Array:
    """[B, num_codes, num_classes]: 1 at (code, label) of each example, so that the mean over examples is p(k, y)."""
    return jax.nn.one_hot(codes, num_codes)[:, :, None] * jax.nn.one_hot(labels, num_classes)[:, None, :]


@functools.cache
def _classifier(dataset: str, source: str, data_dir: str, seed: int, cache: str):
    train, test = (data.load(dataset, split, source, data_dir or None, seed) for split in ("train", "test"))
    return load_classifier(train, test)


def code_classifier(config):
    """genjax.evaluate's metric classifier for config's dataset (trained on its full training split). Cached
    in the process too: a family built inside a traced function (genjax.train.trials) must not train it."""
    return _classifier(config.dataset, config.source, config.data_dir, config.seed, cache_dir())


def make_family(config, dataset) -> Family:
    num_categories, num_continuous, latent_dim = config.num_categories, config.num_continuous, config.latent_dim
    dtype = compute_dtype(config)
    generator = ConvGenerator(tuple(dataset.example_shape), tuple(reversed(config.conv_channels)), config.upsample, dtype=dtype)
    discriminator = InfoDiscriminator(
        tuple(config.conv_channels), config.discriminator_norm, num_categories, num_continuous, config.q_hidden, dtype
    )
    discriminator_loss_terms, generator_loss = LOSSES[config.adversarial_loss]
    g_tx, d_tx = adam(config, config.learning_rate * config.g_learning_rate_scale), adam(config)
    weight_categorical, weight_continuous = config.info_weight_categorical, config.info_weight_continuous
    classifier, num_classes = code_classifier(config), dataset.num_classes

    def noise_and_codes(key, n):
        z_key, code_key = jax.random.split(key)
        return jax.random.normal(z_key, (n, latent_dim)), draw_codes(code_key, n, num_categories, num_continuous)

    def discriminate(variables, x, train, with_q=True):
        return gan.run(discriminator, variables, x, with_q, train=train)

    def information_loss(q, codes):
        """(-lambda L_I, the two bounds' batch means)."""
        categorical, continuous = information_bounds(q, *codes)
        bounds = {"info_categorical": jnp.mean(categorical), "info_continuous": jnp.mean(continuous)}
        return -(weight_categorical * bounds["info_categorical"] + weight_continuous * bounds["info_continuous"]), bounds

    def init(key, batch):
        g_key, d_key = jax.random.split(key)
        real = 2.0 * batch["image"] - 1.0
        g_variables = generator.init(g_key, jnp.zeros((len(real), latent_dim + num_categories + num_continuous)))
        d_variables = discriminator.init(d_key, real)
        return {
            "generator": g_variables,
            "discriminator": d_variables,
            "g_opt_state": g_tx.init(g_variables["params"]),
            "d_opt_state": d_tx.init(d_variables["params"]),
            "step": jnp.zeros((), jnp.int32),
        }

    def discriminator_objective(d_params, d_variables, real, fake, codes):
        variables = {**d_variables, "params": d_params}
        (real_scores, _), variables = discriminate(variables, real, train=True, with_q=False)
        (fake_scores, q), variables = discriminate(variables, fake, train=True)
        real_term, fake_term = discriminator_loss_terms(real_scores, fake_scores)
        d_loss = jnp.mean(real_term) + jnp.mean(fake_term)
        info_loss, bounds = information_loss(q, codes)
        return d_loss + info_loss, (variables, {"d_loss": d_loss, "g_loss": jnp.mean(generator_loss(fake_scores)), **bounds})

    def train_step(state, batch, key):
        real = 2.0 * batch["image"] - 1.0  # [0, 1] -> [-1, 1], the range of G's tanh
        z, codes = noise_and_codes(key, len(real))

        def generate(g_params):
            return gan.run(generator, {**state["generator"], "params": g_params}, generator_input(z, *codes, num_categories), train=True)

        fake, pull_back, g_variables = jax.vjp(generate, state["generator"]["params"], has_aux=True)
        d_grads, (d_variables, metrics) = jax.grad(discriminator_objective, has_aux=True)(
            state["discriminator"]["params"], state["discriminator"], real, jax.lax.stop_gradient(fake), codes
        )
        d_params, d_opt_state = apply_gradients(d_tx, state["discriminator"]["params"], state["d_opt_state"], d_grads)
        d_variables = {**d_variables, "params": d_params}

        def loss_of_fakes(fake):
            (scores, q), _ = discriminate(d_variables, fake, train=True)  # D's statistics are D's step's
            return jnp.mean(generator_loss(scores)) + information_loss(q, codes)[0]

        (g_grads,) = pull_back(jax.grad(loss_of_fakes)(fake))
        g_params, g_opt_state = apply_gradients(g_tx, g_variables["params"], state["g_opt_state"], g_grads)
        new_state = {
            "generator": {**g_variables, "params": g_params},
            "discriminator": d_variables,
            "g_opt_state": g_opt_state,
            "d_opt_state": d_opt_state,
            "step": state["step"] + 1,
        }
        return new_state, metrics

    def generate_images(state, z, categories, continuous):
        """Images in [0, 1] from the given noise and codes, G in inference mode."""
        fake = gan.run(generator, state["generator"], generator_input(z, categories, continuous, num_categories), train=False)[0]
        return (fake + 1.0) / 2.0

    def code_class_joint(state, z, continuous):
        """Per example [B, K, C]: one-hot classifier labels of the images of every category k from this example's
        z and continuous code, divided by K, so that their test-set mean is the joint p(k, y)."""
        n = len(z)
        categories = jnp.repeat(jnp.arange(num_categories), n)
        images = generate_images(state, jnp.tile(z, (num_categories, 1)), categories, jnp.tile(continuous, (num_categories, 1)))
        _, logits = classifier.model.apply({"params": classifier.params}, images)
        pairs = one_hot_pairs(categories, num_categories, jnp.argmax(logits, axis=-1), num_classes)
        return pairs.reshape(num_categories, n, num_categories, num_classes).sum(axis=0) / num_categories

    def eval_step(state, batch, key):
        real = 2.0 * batch["image"] - 1.0
        z, codes = noise_and_codes(key, len(real))
        fake = 2.0 * generate_images(state, z, *codes) - 1.0
        (real_scores, q_real), _ = discriminate(state["discriminator"], real, train=False)
        (fake_scores, q), _ = discriminate(state["discriminator"], fake, train=False)
        real_term, fake_term = discriminator_loss_terms(real_scores, fake_scores)
        categorical, continuous = information_bounds(q, *codes)
        return {
            "d_real": real_term,
            "d_fake": fake_term,
            "d_loss": real_term + fake_term,
            "g_loss": generator_loss(fake_scores),
            "info_categorical": categorical,
            "info_continuous": continuous,
            "code_class_joint": code_class_joint(state, z, codes[1]),
            "q_class_joint": one_hot_pairs(jnp.argmax(q_real[0], axis=-1), num_categories, batch["label"], num_classes),
        }

    def summarize_eval(means):
        scalars = {name: value for name, value in means.items() if name not in JOINTS.values()}
        for prefix, joint in JOINTS.items():
            scalars.update({f"{prefix}_{name}": value for name, value in code_class_agreement(means[joint]).items()})
        return scalars

    def sample(state, key, n):
        z, codes = noise_and_codes(key, n)
        return generate_images(state, z, *codes)

    @jax.jit  # one program, not each layer's operations compiled one by one (seconds on a cold cache)
    def figure_panels(state, key):
        columns = len(FIGURE_VALUES)
        categories = jnp.repeat(jnp.arange(num_categories), columns)
        noise_draws = jax.random.normal(key, (columns, latent_dim))
        panels = [
            generate_images(state, jnp.tile(noise_draws, (num_categories, 1)), categories, jnp.zeros((len(categories), num_continuous)))
        ]
        for j in range(num_continuous):
            continuous = (
                jnp.zeros((len(categories), num_continuous)).at[:, j].set(jnp.tile(jnp.asarray(FIGURE_VALUES, jnp.float32), num_categories))
            )
            panels.append(generate_images(state, jnp.broadcast_to(noise_draws[0], (len(categories), latent_dim)), categories, continuous))
        return panels

    def figures(state, test, key, workdir):
        """info_codes.png: one row per category; the first panel's columns are 10 noise draws (continuous codes
        0), each further panel's columns one continuous code from -2 to 2 (the others 0, the noise fixed)."""
        grids = [viz.image_grid(np.asarray(panel), len(FIGURE_VALUES)) for panel in figure_panels(state, key)]
        gap = np.full((grids[0].shape[0], 12, grids[0].shape[2]), 255, np.uint8)
        viz.save_image(
            os.path.join(workdir, "info_codes.png"), np.concatenate([part for grid in grids for part in (grid, gap)][:-1], axis=1)
        )

    return Family(
        name="infogan",
        init=init,
        train_step=train_step,
        eval_step=eval_step,
        sample=sample,
        summarize_eval=summarize_eval,
        figures=figures,
        progress_metrics=("d_loss", "g_loss", "info_categorical"),
        convolutional=True,
    )


def search_space(config) -> dict:
    """The study's ranges, Lucic et al. (2018)'s for every GAN: learning rate log-uniform [1e-5, 1e-2] (G's stays
    g_learning_rate_scale times it) and Adam beta1 uniform [0, 1). The information weights stay the paper's:
    the study ranks by sample quality alone."""
    return {"learning_rate": LogUniform(1e-5, 1e-2), "adam_b1": Uniform(0.0, 1.0)}


FIELDS = {
    "adversarial_loss": "non_saturating (Goodfellow 2014, the paper's), hinge (Lim & Ye 2017) or least_squares (Mao 2017)",
    "latent_dim": "dimension of the noise z ~ N(0, I) beside the codes (62 for MNIST in the paper)",
    "num_categories": "values of the categorical code c_cat ~ Cat(K), uniform",
    "num_continuous": "continuous codes c_j ~ U(-1, 1)",
    "info_weight_categorical": "lambda of the categorical code's mutual-information bound (paper: 1)",
    "info_weight_continuous": "lambda of the continuous codes' bound (paper: smaller than for discrete codes; 0.1)",
    "conv_channels": "conv discriminator widths (the conv generator mirrors them)",
    "upsample": "conv generator upsampling: subpixel (fast on CPU) or transpose (4x4 stride-2, as DCGAN)",
    "discriminator_norm": "D's body: none, batch (DCGAN) or spectral (SN-GAN); Q's head always has BatchNorm, as in the paper",
    "q_hidden": "width of Q's hidden layer on top of D's body (paper: 128)",
    "g_learning_rate_scale": "G's learning rate as a multiple of learning_rate, D's and Q's (paper: 1e-3 / 2e-4 = 5)",
}
