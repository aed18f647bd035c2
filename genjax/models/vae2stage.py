"""The two-stage VAE (Dai & Wipf 2019, "Diagnosing and Enhancing VAE Models", ICLR): a second VAE fitted to
the codes of a trained VAE, and samples drawn through both decoders.

Stage 1 is the VAE of genjax.models.vae (vae_mnist's). Dai & Wipf show that its aggregate posterior
q(z) = E_x q(z|x) is not the prior N(0, I): decoding z ~ N(0, I) lands where the decoder has seen few codes.
Stage 2 is a VAE over z itself, with the same latent size D as stage 1 and a learned variance gamma:

    u ~ N(0, I),    p(z|u) = N(z; mean2(u), gamma I),    q(u|z) = N(u; mu2(z), diag(sigma2(z)^2)),

fitted to the codes of the training images under the frozen stage-1 encoder, by default their posterior
means (stage2_input 'mean'; 'sample' draws z ~ q(z|x) afresh every step, as the paper's code does), by
minimising, per code,

    loss2 = E_q(u|z)[ |z - mean2(u)|^2 / (2 gamma) ] + D/2 log(2 pi gamma) + KL(q(u|z) || N(0, I))

with one reparameterized u and the analytic KL; gamma = exp(2 log_std) is one learned scalar (1 at init).
With gamma learned, stage 2 can match q(z) closely (the paper's section 4). Sampling is
u ~ N(0, I) -> z ~ N(mean2(u), gamma I) -> the stage-1 decoder's mean image, as the paper's code draws it
(the draw, not mean2(u): a stage 2 still near its trivial solution, mean2 constant and gamma 1, then
samples as stage 1's own prior does rather than decoding one code).

The paper's stage 1 also learns gamma (a Gaussian decoder), so that the encoder variances of unused latent
dimensions go to 1 and those of used ones to 0. vae_mnist's decoder is Bernoulli, a fixed-variance
likelihood of the pixels: genjax keeps it as the default, so stage 1 is exactly vae_mnist's run and its
prior samples are the baseline; --config.likelihood=gaussian is the paper's learned-gamma stage 1
(vae.py's learned global scale).

Evaluation reports the bound of the whole model p(x) = int p1(x|z) p2(z|u) p(u) du dz under the proposal
q1(z|x) q2(u|z), in nats per image,

    neg_elbo = E[-log p1(x|z)] + E[log q1(z|x) - log p2(z|u) - log p(u) + log q2(u|z)] = reconstruction + kl

(one z, one u; log q1 by its analytic entropy, the rest as loss2 at that z), beside stage 1's own bound with
its N(0, I) prior (stage1_neg_elbo), stage 1's recon_mse, the stage-2 loss per code and gamma.
importance_log_weights are those of the same joint proposal, so the IWAE bound is of the two-stage model.

The state carries the frozen stage-1 parameter average under 'stage1' (restored from the checkpoint at
config.stage1_step in config.stage1_workdir when stage 2 starts, then saved with every stage-2 checkpoint),
so count_params counts stage 2 only.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax import losses
from genjax.checkpoint import restore_earlier_stage
from genjax.config import check, check_choice, check_positive
from genjax.data import TOY_DATASETS, to_model_batch
from genjax.models import vae
from genjax.nn.precision import compute_dtype
from genjax.search import LogUniform
from genjax.train.family import Family, check_batch
from genjax.train.optim import apply_gradients

STAGE2_INPUTS = ("mean", "sample")


def stage1_config(config):
    """Stage 1's config from the experiment's: the VAE (family 'vae') with every field as it is."""
    stage1 = config.copy_and_resolve_references()
    stage1.model = "vae"
    return stage1


def check_stage2_fields(config) -> None:
    """The stage2_* fields, named as the user sets them (before they become the engine's num_steps and learning_rate)."""
    check(config.stage2_num_steps >= 0, f"stage2_num_steps must be >= 0, got {config.stage2_num_steps}")
    check_positive(config, "stage2_learning_rate")
    check(
        len(config.stage2_hidden_sizes) > 0 and all(w > 0 for w in config.stage2_hidden_sizes),
        f"stage2_hidden_sizes must be one or more positive widths, got {config.stage2_hidden_sizes}",
    )
    check_choice(config, "stage2_input", STAGE2_INPUTS)


def stage_config(config, stage1_workdir: str, stage1_step: int):
    """Stage 2's config from the experiment's: the stage2_* fields become the engine's."""
    check_stage2_fields(config)
    stage2 = config.copy_and_resolve_references()
    stage2.model = "vae2stage"
    stage2.num_steps = config.stage2_num_steps
    stage2.learning_rate = config.stage2_learning_rate
    stage2.stage1_workdir = stage1_workdir
    stage2.stage1_step = stage1_step
    return stage2


def validate(config) -> None:
    vae.validate(config)
    check_stage2_fields(config)
    check(
        config.dataset not in TOY_DATASETS, f"vae2stage models images, not the 2-D points of {config.dataset}; use --config.dataset=mnist"
    )
    check(bool(config.get("stage1_workdir")), "vae2stage needs config.stage1_workdir, the run directory of a trained VAE")


def build_stage2(config) -> vae.VAE:
    """The stage-2 VAE: an MLP VAE whose 'images' are the D-dimensional codes, Gaussian with learned gamma."""
    return vae.VAE(
        image_shape=(config.latent_dim,),
        latent_dim=config.latent_dim,
        hidden_sizes=tuple(config.stage2_hidden_sizes),
        likelihood="gaussian",
        dtype=compute_dtype(config),
    )


def load_stage1(config, dataset):
    """The trained VAE's parameter average at step config.stage1_step (latest if 0) of config.stage1_workdir."""
    example = to_model_batch(dataset.take(np.arange(min(config.batch_size, dataset.num_examples))))
    family = vae.make_family(config, dataset)
    state = restore_earlier_stage(
        config.stage1_workdir, config.stage1_step, family, example, "vae", "VAE", "train stage 1 first", "vae2stage_mnist"
    )
    return state["ema_params"]


def stage1_codes(model: vae.VAE, params, images, key, stage2_input: str):
    """What stage 2 is fitted to: z ~ q(z|x) under the stage-1 encoder ('sample') or its mean ('mean'), [B, D]."""
    mean, log_var = model.apply({"params": params}, images, method="encode")
    return mean if stage2_input == "mean" else losses.reparameterize(key, mean, log_var)


def gamma_of(params) -> jax.Array:
    """Stage 2's decoder variance gamma = exp(2 log_std)."""
    return jnp.exp(2.0 * params["log_std"])


def make_family(config, dataset) -> Family:
    model1 = vae.build_model(config, dataset.example_shape)
    model2 = build_stage2(config)
    stage1 = vae.make_family(config, dataset)
    frozen = load_stage1(config, dataset)
    tx = optax.adam(config.learning_rate)
    ema_decay, stage2_input = config.ema_decay, config.stage2_input

    def check_images(batch, where):
        check_batch(batch, "image", model1.image_shape, f"vae2stage.{where}")

    def stage1_state(state):
        """The frozen VAE as its own family's state (its functions read the parameter average)."""
        return {"ema_params": state["stage1"]}

    def init(key, batch):
        check_images(batch, "init")
        params_key, sample_key = jax.random.split(key)
        codes = jnp.zeros((len(batch["image"]), config.latent_dim))
        params = model2.init(params_key, codes, sample_key)["params"]
        return {"params": params, "opt_state": tx.init(params), "ema_params": params, "stage1": frozen}

    def train_step(state, batch, key):
        check_images(batch, "train_step")
        code_key, stage2_key = jax.random.split(key)
        z = stage1_codes(model1, state["stage1"], batch["image"], code_key, stage2_input)

        def loss_fn(params):
            reconstruction, kl = model2.apply({"params": params}, z, stage2_key)
            loss = jnp.mean(reconstruction + kl)
            return loss, {"loss": loss, "reconstruction": jnp.mean(reconstruction), "kl": jnp.mean(kl), "gamma": gamma_of(params)}

        grads, metrics = jax.grad(loss_fn, has_aux=True)(state["params"])
        params, opt_state = apply_gradients(tx, state["params"], state["opt_state"], grads)
        ema_params = optax.incremental_update(params, state["ema_params"], 1 - ema_decay)
        return {**state, "params": params, "opt_state": opt_state, "ema_params": ema_params}, metrics

    def eval_step(state, batch, key):
        check_images(batch, "eval_step")
        x, (z_key, u_key) = batch["image"], jax.random.split(key)
        variables1, variables2 = {"params": state["stage1"]}, {"params": state["ema_params"]}
        mean1, log_var1 = model1.apply(variables1, x, method="encode")
        z = losses.reparameterize(z_key, mean1, log_var1)
        reconstruction = model1.apply(variables1, model1.apply(variables1, z, method="decode"), x, method="negative_log_likelihood")
        neg_entropy1 = -0.5 * jnp.sum(log_var1 + math.log(2 * math.pi) + 1.0, axis=-1)  # E_q1[log q1(z|x)]
        code_nll, code_kl = model2.apply(variables2, z, u_key)
        stage1_metrics = stage1.eval_step(stage1_state(state), batch, key)
        kl = neg_entropy1 + code_nll + code_kl
        return {
            "neg_elbo": reconstruction + kl,
            "reconstruction": reconstruction,
            "kl": kl,
            "stage1_neg_elbo": stage1_metrics["neg_elbo"],
            "recon_mse": stage1_metrics["recon_mse"],
            "stage2_loss": code_nll + code_kl,
            "gamma": jnp.broadcast_to(gamma_of(state["ema_params"]), reconstruction.shape),
        }

    def sample(state, key, n):
        u_key, noise_key = jax.random.split(key)
        u = jax.random.normal(u_key, (n, config.latent_dim))
        mean2 = model2.apply({"params": state["ema_params"]}, u, method="decode")
        z = mean2 + jnp.exp(state["ema_params"]["log_std"]) * jax.random.normal(noise_key, mean2.shape)
        return model1.apply({"params": state["stage1"]}, z, method="mean_image")

    def importance_log_weights(state, batch, key, num_samples):
        """log p1(x|z_k) + log p2(z_k|u_k) + log p(u_k) - log q1(z_k|x) - log q2(u_k|z_k), with
        z_k ~ q1(z|x) and u_k ~ q2(u|z_k): [B, K]."""
        variables1, variables2 = {"params": state["stage1"]}, {"params": state["ema_params"]}
        x, (z_key, u_key) = batch["image"], jax.random.split(key)
        mean1, log_var1 = model1.apply(variables1, x, method="encode")
        z = losses.reparameterize(z_key, jnp.broadcast_to(mean1, (num_samples, *mean1.shape)), log_var1)  # [K, B, D]
        flat_z = z.reshape(-1, mean1.shape[-1])
        repeated_x = jnp.broadcast_to(x, (num_samples, *x.shape)).reshape(-1, *x.shape[1:])
        log_px = -model1.apply(variables1, model1.apply(variables1, flat_z, method="decode"), repeated_x, method="negative_log_likelihood")
        mean2, log_var2 = model2.apply(variables2, flat_z, method="encode")
        u = losses.reparameterize(u_key, mean2, log_var2)
        log_pz = -model2.apply(variables2, model2.apply(variables2, u, method="decode"), flat_z, method="negative_log_likelihood")
        log_pu = losses.diagonal_gaussian_log_prob(u, jnp.zeros_like(u), jnp.zeros_like(u))
        log_qu = losses.diagonal_gaussian_log_prob(u, mean2, log_var2)
        log_qz = losses.diagonal_gaussian_log_prob(z, mean1, log_var1).reshape(-1)
        return (log_px + log_pz + log_pu - log_qu - log_qz).reshape(num_samples, -1).T

    return Family(
        name="vae2stage",
        init=init,
        train_step=train_step,
        eval_step=eval_step,
        sample=sample,
        reconstruct=lambda state, batch, key: stage1.reconstruct(stage1_state(state), batch, key),
        progress_metrics=("loss", "gamma"),
        importance_log_weights=importance_log_weights,
        encode=lambda state, batch: stage1.encode(stage1_state(state), batch),
        decode=lambda state, z: stage1.decode(stage1_state(state), z),
        convolutional=model1.architecture == "conv",
    )


def search_space(config) -> dict:
    """The VAE's ranges for stage 1 (learning rate, Adam beta1, beta, code size, which stage 2 shares; not its
    sampler: stage 2 is this family's sampler) and stage 2's learning rate."""
    stage1 = {field: distribution for field, distribution in vae.search_space(config).items() if field != "sampler"}
    return {**stage1, "stage2_learning_rate": LogUniform(1e-5, 1e-2)}


FIELDS = {
    "stage2_num_steps": "training steps of the second VAE (stage 2; 0: stage 1 alone)",
    "stage2_learning_rate": "Adam step size of the second VAE",
    "stage2_hidden_sizes": "MLP hidden widths of the second VAE's encoder (its decoder mirrors them)",
    "stage2_input": "what stage 2 is fitted to: mean (the posterior means) or sample (z ~ q(z|x), fresh every step, as the paper's code)",
    "stage1_workdir": "run directory of the trained VAE (set by experiments.vae2stage_mnist)",
    "stage1_step": "checkpoint step of the VAE to fit stage 2 to (0: latest; set by experiments.vae2stage_mnist)",
}
