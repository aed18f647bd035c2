"""Generative adversarial networks (Goodfellow et al. 2014) and their descendants, as one family.

A generator G maps z ~ N(0, I) to data; a discriminator (critic) D scores data. The config picks
    adversarial_loss:   'non_saturating' (Goodfellow et al. 2014), 'hinge' (Lim & Ye 2017; Miyato et al. 2018),
                        'least_squares' (LSGAN, Mao et al. 2017) or 'wasserstein_gp' (Gulrajani et al. 2017,
                        gradient penalty weight gp_weight)
    architecture:       'mlp' or 'conv' (DCGAN, Radford et al. 2016; images only)
    discriminator_norm: 'none', 'batch' (DCGAN) or 'spectral' (SN-GAN, Miyato et al. 2018)
    conditional:        class-conditional G (Mirza & Osindero 2014) and projection D (Miyato & Koyama 2018)
    pack:               PacGAN (Lin et al. 2018): D scores m = pack examples at once, reals packed with
                        reals and fakes with fakes (gan_nets.pack_examples); 1 is the unpacked GAN
    g_norm, d_activation: BatchNorm in the MLP generator, maxout units in the MLP discriminator (PacGAN's
                        2-D networks)
    ema_decay:          > 0: samples and evaluation use an exponential moving average of G's parameters
                        (Yazici et al. 2019, "The Unusual Effectiveness of Averaging in GAN Training"),
                        theta_avg <- decay theta_avg + (1 - decay) theta after every step; D is not averaged, and
                        a BatchNorm generator keeps the running statistics of the trained G
    sampler:            'generator' (G's draws) or 'drs', discriminator rejection sampling (Azadi et al.
                        2019, genjax.models.rejection): G's draws kept with probability exp(logit D - log M);
                        non-saturating loss, pack 1, unconditional
(see genjax.losses for the losses' maths). The state is one pytree:

    {"generator":     {"params", ["batch_stats"]},        flax variables of G
     "discriminator": {"params", ["batch_stats" | "spectral"]},
     "g_opt_state", "d_opt_state",                        two Adam optimizers (betas adam_b1, adam_b2)
     ["g_average"],                                       G's parameter average (ema_decay > 0)
     "step"}                                              train steps taken (int32)

One train_step updates D, then G, on one batch:
  1. G generates fakes from fresh z in training mode (BatchNorm uses batch statistics and updates its
     running averages); jax.vjp keeps what G's backward pass needs, so G runs forward once per step, as in
     the PyTorch DCGAN example, which also reuses one batch of fakes for both updates.
  2. D takes one Adam step on its loss over the real batch and the (gradient-stopped) fakes; its batch
     statistics and spectral-norm power iterations advance.
  3. G takes one Adam step on its loss through the updated D, every n_critic-th step of the run (the train
     batch's 'step'; the state's own count for a caller that gives none). With n_critic > 1
     (WGAN-GP's 5) the other steps skip it (genjax.train.policy.update_when: a lax.cond, or on CPU with
     conv networks a select): so every critic update sees a fresh batch of
     real data and fresh z, as in algorithm 1 of Gulrajani et al. (2017), and num_steps counts critic
     updates (the paper's generator iterations are num_steps / n_critic). Splitting one batch into five
     critic sub-batches instead would shrink the critic's batch fivefold.
D's running averages are updated only by D's own step; G's step runs D in training mode but discards them.

Evaluation and sampling run both networks in inference mode (BatchNorm running averages; spectral norm
with its stored power-iteration vector, not updated). eval_step reports, per test example, the
discriminator's loss terms on the real example (d_real) and on one generated example (d_fake), their
sum d_loss and the generator's loss g_loss; for the Wasserstein loss -d_loss estimates the Wasserstein-1
distance between test data and samples. On the 2-D Gaussian mixtures it also reports how far samples fall
from the mixture means (mode_distance), the fraction within 3 standard deviations of one (high_quality,
Srivastava et al. 2017) and the number of modes that get at least 20 of every 2,500 samples
(modes_populated, the rule of Lin et al. 2018; genjax.metrics.modes counts modes_captured, modes with
at least one high-quality sample, the rule of the VEEGAN/PacGAN tables).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax import losses
from genjax.config import check, check_choice
from genjax.data.toy2d import TOY_DATASETS, mixture_modes
from genjax.models.gan_nets import (
    ACTIVATIONS,
    GENERATOR_NORMS,
    NORMS,
    ConvDiscriminator,
    ConvGenerator,
    MLPDiscriminator,
    MLPGenerator,
    pack_examples,
)
from genjax.models.rejection import rejection_sample
from genjax.nn.conditioning import class_rows
from genjax.nn.precision import compute_dtype
from genjax.search import Choice, LogUniform, Uniform
from genjax.train import policy
from genjax.train.family import Family
from genjax.train.optim import adam, apply_gradients

LOSSES = {
    "non_saturating": (losses.non_saturating_discriminator_loss, losses.non_saturating_generator_loss),
    "hinge": (losses.hinge_discriminator_loss, losses.hinge_generator_loss),
    "least_squares": (losses.least_squares_discriminator_loss, losses.least_squares_generator_loss),
    "wasserstein_gp": (losses.wasserstein_critic_loss, losses.wasserstein_generator_loss),
}
ARCHITECTURES = ("mlp", "conv")
SAMPLERS = ("generator", "drs")
UPSAMPLES = ("subpixel", "transpose")
MIN_MODE_SHARE = 20 / 2500  # a mode is populated when it gets at least this share of the samples (Lin et al. 2018)


def defaults() -> dict:
    """The GAN fields with their defaults (an MLP GAN with the non-saturating loss); experiments override them."""
    return {
        "model": "gan",
        "architecture": "mlp",
        "adversarial_loss": "non_saturating",
        "latent_dim": 100,
        "g_hidden_sizes": (256, 512),
        "d_hidden_sizes": (512, 256),
        "conv_channels": (32, 64),
        "upsample": "subpixel",
        "discriminator_norm": "none",
        "g_norm": "none",
        "d_activation": "leaky_relu",
        "maxout_pieces": 5,
        "pack": 1,
        "sampler": "generator",
        "ema_decay": 0.0,
        "conditional": False,
        "n_critic": 1,
        "gp_weight": 10.0,
        "learning_rate": 2e-4,
        "adam_b1": 0.5,
        "adam_b2": 0.999,
    }


def validate(config) -> None:
    check_choice(config, "architecture", ARCHITECTURES)
    check_choice(config, "adversarial_loss", tuple(LOSSES))
    check_choice(config, "discriminator_norm", NORMS)
    check_choice(config, "upsample", UPSAMPLES)
    check(config.latent_dim > 0, f"latent_dim must be a positive integer, got {config.latent_dim}")
    for field in ("g_hidden_sizes", "d_hidden_sizes", "conv_channels"):
        check(len(config[field]) > 0 and all(w > 0 for w in config[field]), f"{field} must be positive widths, got {config[field]}")
    check_choice(config, "g_norm", GENERATOR_NORMS)
    check_choice(config, "d_activation", ACTIVATIONS)
    check(config.maxout_pieces >= 2, f"maxout_pieces must be >= 2, got {config.maxout_pieces}")
    check(config.pack >= 1, f"pack must be a positive integer, got {config.pack}")
    check(
        config.batch_size % config.pack == 0,
        f"batch_size {config.batch_size} is not a multiple of pack {config.pack}; D scores whole packs, so choose e.g. batch_size {config.batch_size // config.pack * config.pack or config.pack}",
    )
    check(not (config.conditional and config.pack > 1), "pack > 1 has no class label per pack; use conditional False with pack")
    check(
        config.architecture == "mlp" or (config.g_norm == "none" and config.d_activation == "leaky_relu"),
        "g_norm and d_activation 'maxout' are for the MLP networks; use architecture 'mlp' or leave them at their defaults",
    )
    check(
        not (config.d_activation == "maxout" and config.discriminator_norm != "none"),
        "maxout units are not normalized; use discriminator_norm 'none' with d_activation 'maxout'",
    )
    sampler = config.get("sampler", SAMPLERS[0])  # runs saved before samplers existed have none
    check(sampler in SAMPLERS, f"unknown sampler '{sampler}'; choose one of: {', '.join(SAMPLERS)}")
    check(
        sampler != "drs" or (config.adversarial_loss == "non_saturating" and config.pack == 1 and not config.conditional),
        "sampler 'drs' reads D's logit as a log density ratio: it needs adversarial_loss 'non_saturating', pack 1 and "
        "conditional False; use sampler 'generator' otherwise",
    )
    ema_decay = config.get("ema_decay", 0.0)
    check(0 <= ema_decay < 1, f"ema_decay must be in [0, 1), got {ema_decay}")
    check(config.n_critic >= 1, f"n_critic must be a positive integer, got {config.n_critic}")
    check(config.gp_weight >= 0, f"gp_weight must be >= 0, got {config.gp_weight}")
    check(
        not (config.adversarial_loss == "wasserstein_gp" and config.discriminator_norm == "batch"),
        "the gradient penalty needs a critic that scores examples independently; use discriminator_norm 'none' or 'spectral' with adversarial_loss 'wasserstein_gp'",
    )
    check(
        not (config.architecture == "conv" and config.dataset in TOY_DATASETS),
        f"architecture 'conv' needs images, and '{config.dataset}' is 2-D points; use architecture 'mlp'",
    )


def build_networks(config, dataset):
    """(generator, discriminator) Flax modules for `dataset`'s example shape and classes."""
    num_classes = dataset.num_classes if config.conditional else 0
    dtype = compute_dtype(config)
    if config.architecture == "conv":
        generator = ConvGenerator(
            tuple(dataset.example_shape), tuple(reversed(config.conv_channels)), config.upsample, num_classes, dtype=dtype
        )
        return generator, ConvDiscriminator(tuple(config.conv_channels), config.discriminator_norm, num_classes, dtype=dtype)
    is_image = dataset.data_key == "image"
    generator = MLPGenerator(tuple(dataset.example_shape), tuple(config.g_hidden_sizes), is_image, num_classes, config.g_norm, dtype=dtype)
    discriminator = MLPDiscriminator(
        tuple(config.d_hidden_sizes), config.discriminator_norm, num_classes, config.d_activation, config.maxout_pieces, dtype=dtype
    )
    return generator, discriminator


def run(module, variables: dict, *inputs, train: bool):
    """(output, variables): a module applied in training mode returns its updated non-parameter collections
    (batch statistics, spectral-norm vectors); in inference mode nothing changes."""
    if not train:
        return module.apply(variables, *inputs, train=False), variables
    out, updates = module.apply(variables, *inputs, train=True, mutable=[c for c in variables if c != "params"])
    return out, {**variables, **updates}


def mixture_scores(points: jax.Array, means: np.ndarray, std: float) -> dict:
    """Per generated point: distance to the nearest mixture mean, whether it is within 3 std of it
    (high_quality), and a one-hot row of that mode for high-quality points (mode_counts [B, K])."""
    distances = jnp.linalg.norm(points[:, None, :] - jnp.asarray(means)[None], axis=-1)
    nearest = jnp.min(distances, axis=1)
    high_quality = (nearest < 3 * std).astype(jnp.float32)
    counts = jax.nn.one_hot(jnp.argmin(distances, axis=1), len(means)) * high_quality[:, None]
    return {"mode_distance": nearest, "high_quality": high_quality, "mode_counts": counts}


def summarize_mixture(means: dict) -> dict:
    """Test-set means to scalars: mode_counts (each mode's share of the samples) becomes modes_populated."""
    scalars = {name: value for name, value in means.items() if name != "mode_counts"}
    if "mode_counts" in means:
        scalars["modes_populated"] = jnp.sum(means["mode_counts"] >= MIN_MODE_SHARE).astype(jnp.float32)
    return scalars


def make_family(config, dataset) -> Family:
    generator, discriminator = build_networks(config, dataset)
    discriminator_loss_terms, generator_loss = LOSSES[config.adversarial_loss]
    g_tx, d_tx = adam(config), adam(config)
    is_image = dataset.data_key == "image"
    num_classes = dataset.num_classes if config.conditional else 0
    gradient_penalty = config.adversarial_loss == "wasserstein_gp"
    conv_networks = config.architecture == "conv"
    n_critic, gp_weight, latent_dim, pack = config.n_critic, config.gp_weight, config.latent_dim, config.pack
    mixture = mixture_modes(dataset.name) if dataset.name in ("ring8", "grid25") else None
    sampler = config.get("sampler", SAMPLERS[0])
    ema_decay = config.get("ema_decay", 0.0)

    def to_model_space(x):
        return 2.0 * x - 1.0 if is_image else x  # images: [0, 1] -> [-1, 1], the range of G's tanh

    def to_data_space(x):
        return (x + 1.0) / 2.0 if is_image else x

    def inputs(batch):
        return to_model_space(batch[dataset.data_key]), batch["label"] if num_classes else None

    def init(key, batch):
        g_key, d_key = jax.random.split(key)
        real, labels = inputs(batch)
        g_variables = generator.init(g_key, jnp.zeros((len(real), latent_dim)), labels)
        d_variables = discriminator.init(d_key, pack_examples(real, pack), labels)
        state = {
            "generator": g_variables,
            "discriminator": d_variables,
            "g_opt_state": g_tx.init(g_variables["params"]),
            "d_opt_state": d_tx.init(d_variables["params"]),
            "step": jnp.zeros((), jnp.int32),
        }
        return {**state, "g_average": g_variables["params"]} if ema_decay else state

    def discriminator_objective(d_params, d_variables, real, fake, labels, key):
        variables = {**d_variables, "params": d_params}
        real_scores, variables = run(discriminator, variables, real, labels, train=True)
        fake_scores, variables = run(discriminator, variables, fake, labels, train=True)
        real_term, fake_term = discriminator_loss_terms(real_scores, fake_scores)
        d_loss = jnp.mean(real_term) + jnp.mean(fake_term)
        metrics = {"d_loss": d_loss, "g_loss": jnp.mean(generator_loss(fake_scores))}
        objective = d_loss
        if gradient_penalty:

            def critic(x):
                return run(discriminator, variables, x, labels, train=False)[0]

            penalty = jnp.mean(losses.gradient_penalty(critic, real, fake, key, gp_weight))
            metrics["gradient_penalty"] = penalty
            objective = d_loss + penalty
        return objective, (variables, metrics)

    def train_step(state, batch, key):
        real, labels = inputs(batch)
        z_key, penalty_key = jax.random.split(key)
        z = jax.random.normal(z_key, (len(real), latent_dim))

        def generate(g_params):
            return run(generator, {**state["generator"], "params": g_params}, z, labels, train=True)

        fake, pull_back, g_variables = jax.vjp(generate, state["generator"]["params"], has_aux=True)
        # D sees packs: the gradient penalty interpolates between real and fake packs (Lin et al. 2018)
        real_packs, fake_packs = pack_examples(real, pack), pack_examples(jax.lax.stop_gradient(fake), pack)
        d_grads, (d_variables, metrics) = jax.grad(discriminator_objective, has_aux=True)(
            state["discriminator"]["params"], state["discriminator"], real_packs, fake_packs, labels, penalty_key
        )
        d_params, d_opt_state = apply_gradients(d_tx, state["discriminator"]["params"], state["d_opt_state"], d_grads)
        d_variables = {**d_variables, "params": d_params}

        def update_generator(g_params, g_opt_state):
            def loss_of_fakes(fake):
                scores, _ = run(discriminator, d_variables, pack_examples(fake, pack), labels, train=True)  # D's statistics are D's step's
                return jnp.mean(generator_loss(scores))

            (g_grads,) = pull_back(jax.grad(loss_of_fakes)(fake))
            return apply_gradients(g_tx, g_params, g_opt_state, g_grads)

        g_params, g_opt_state = g_variables["params"], state["g_opt_state"]
        if n_critic == 1:
            g_params, g_opt_state = update_generator(g_params, g_opt_state)
        else:
            # the run's step from the batch: in a vectorized group one for all trials, so the turn stays a branch
            generator_turn = (batch.get("step", state["step"]) + 1) % n_critic == 0
            g_params, g_opt_state = policy.update_when(generator_turn, update_generator, (g_params, g_opt_state), conv_networks)
        new_state = {
            "generator": {**g_variables, "params": g_params},
            "discriminator": d_variables,
            "g_opt_state": g_opt_state,
            "d_opt_state": d_opt_state,
            "step": state["step"] + 1,
        }
        if ema_decay:
            new_state["g_average"] = optax.incremental_update(g_params, state["g_average"], 1 - ema_decay)
        return new_state, metrics

    def generate_for_eval(state, key, labels, n):
        z = jax.random.normal(key, (n, latent_dim))
        variables = {**state["generator"], "params": state["g_average"]} if ema_decay else state["generator"]
        return run(generator, variables, z, labels, train=False)[0]

    def eval_step(state, batch, key):
        real, labels = inputs(batch)
        fake = generate_for_eval(state, key, labels, len(real))
        real_scores = run(discriminator, state["discriminator"], pack_examples(real, pack), labels, train=False)[0]
        fake_scores = run(discriminator, state["discriminator"], pack_examples(fake, pack), labels, train=False)[0]
        real_term, fake_term = discriminator_loss_terms(real_scores, fake_scores)
        metrics = {"d_real": real_term, "d_fake": fake_term, "d_loss": real_term + fake_term, "g_loss": generator_loss(fake_scores)}
        metrics = {name: jnp.repeat(value, pack) for name, value in metrics.items()}  # a pack's score for each of its examples
        if mixture is not None:
            metrics.update(mixture_scores(fake, *mixture))
        return metrics

    def sample(state, key, n):
        labels = class_rows(num_classes, n) if num_classes else None
        if sampler == "drs":  # unconditional and unpacked (validate)

            def logit(x):
                return run(discriminator, state["discriminator"], x, None, train=False)[0].reshape(-1)

            draws, _ = rejection_sample(lambda key, m: generate_for_eval(state, key, None, m), logit, key, n)
            return to_data_space(draws)
        return to_data_space(generate_for_eval(state, key, labels, n if labels is None else len(labels)))

    return Family(
        name="gan",
        init=init,
        train_step=train_step,
        eval_step=eval_step,
        sample=sample,
        summarize_eval=summarize_mixture if mixture is not None else None,
        progress_metrics=("d_loss", "g_loss"),
        conditional=bool(num_classes),
        convolutional=conv_networks,
    )


RENAMED = {"loss": "adversarial_loss"}  # one meaning per field: `loss` was also the AE's reconstruction loss


def search_space(config) -> dict:
    """The study's ranges, Lucic et al. (2018)'s: learning rate log-uniform [1e-5, 1e-2], Adam beta1 uniform
    [0, 1), discriminator steps per generator step n_critic in {1, 5}, and the gradient-penalty weight
    log-uniform [0.1, 100] for WGAN-GP."""
    space = {"learning_rate": LogUniform(1e-5, 1e-2), "adam_b1": Uniform(0.0, 1.0), "n_critic": Choice((1, 5))}
    if config.adversarial_loss == "wasserstein_gp":
        space["gp_weight"] = LogUniform(0.1, 100.0)
    return space


FIELDS = {
    "architecture": "networks: mlp, or conv (DCGAN; images only)",
    "adversarial_loss": "non_saturating (Goodfellow 2014), hinge (Lim & Ye 2017), least_squares (Mao 2017) or wasserstein_gp (Gulrajani 2017)",
    "latent_dim": "dimension of the generator's input z ~ N(0, I)",
    "g_hidden_sizes": "MLP generator widths",
    "d_hidden_sizes": "MLP discriminator widths",
    "conv_channels": "conv discriminator widths (the conv generator mirrors them)",
    "upsample": "conv generator upsampling: subpixel (fast on CPU) or transpose (4x4 stride-2, as DCGAN)",
    "discriminator_norm": "none, batch (DCGAN) or spectral (SN-GAN)",
    "g_norm": "MLP generator: none, or batch (BatchNorm before every hidden ReLU)",
    "d_activation": "MLP discriminator units: leaky_relu, or maxout (Goodfellow et al. 2013)",
    "maxout_pieces": "linear pieces of each maxout unit (d_activation maxout)",
    "pack": "PacGAN (Lin et al. 2018): examples D scores together; batch_size must be a multiple",
    "ema_decay": "decay of G's parameter average used for samples and evaluation (0: G's own parameters; Yazici et al. 2019)",
    "sampler": "generator (G's draws) or drs (discriminator rejection sampling, Azadi et al. 2019; non_saturating, pack 1)",
    "conditional": "condition G and D on the class label; sample grids get one row per class",
    "n_critic": "discriminator steps per generator step (WGAN-GP: 5); num_steps counts discriminator steps",
    "gp_weight": "gradient penalty weight lambda (adversarial_loss wasserstein_gp only)",
}
