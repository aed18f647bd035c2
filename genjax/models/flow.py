"""Conditional flow matching with straight paths (Lipman et al. 2023, "Flow Matching for Generative
Modeling"; Liu et al. 2023, "Flow Straight and Fast", rectified flow).

A velocity field v(x, t) transports noise x0 ~ N(0, I) at t = 0 to data x1 at t = 1 along dx/dt = v.
With the straight path between a noise draw and a data point and t ~ U[0, 1],

    x_t = (1 - t) x0 + t x1,    u = dx_t/dt = x1 - x0,    loss = E || v(x_t, t) - u ||^2 / D

(averaged over the D data dimensions); its minimiser is the marginal field v(x, t) = E[x1 - x0 | x_t = x],
whose flow carries N(0, I) to the data distribution. Samples solve the ODE from t = 0 to 1 with a
fixed-step solver: 'euler' (steps evaluations of v) or 'heun', the explicit trapezoid rule (2 * steps).

Log-likelihood by the instantaneous change of variables (Chen et al. 2018, "Neural Ordinary Differential
Equations"; Grathwohl et al. 2019, FFJORD): along a trajectory d log p_t(x_t)/dt = -div v(x_t, t), so

    log p1(x1) = log N(x0; 0, I) - int_0^1 div v(x_t, t) dt = log N(x0; 0, I) + int_1^0 div v dt,

with x0 found by solving the ODE backwards from the data (t = 1) to t = 0, the divergence integrated
alongside by the same solver, in likelihood_steps steps on the grid t_i = 1 - (1 - i/steps)^power: near
sharp data the field is stiff as t -> 1 (for the default MNIST model, uniform Heun steps converge to first
order only: 40, 80, 160, 320 steps are 32%, 15%, 6%, 2% short of the NLL; power 3 gives 3% at 40 steps,
0.7% at 80, 0.2% at 160). The divergence is exact (D Jacobian-vector products, the trace of the
Jacobian) for 2-D points and Hutchinson's estimate E[eps^T (dv/dx) eps] with hutchinson_probes
Rademacher probes eps (one jvp each, drawn once per trajectory) for images: unbiased for log p, up to
the solver's error (which makes the reported NLL a little too low, not an upper bound).

Images: the network models y = 2x - 1 in [-1, 1]. log_likelihood reports the discrete 8-bit image under
uniform dequantization (Theis et al. 2016; Ho et al. 2019): pixels k = round(255 x) in {0..255},
x' = (k + u) / 256 with u ~ U[0, 1)^D, and log P(k) >= E_u[log p(x')] - D log 256, where p is the density
on [0, 1]^D and log p(x') = log p_Y(2x' - 1) + D log 2. So log_likelihood returns one-sample estimates of
log p_Y(y) - D log 128: minus the dequantized NLL of 8-bit data in nats per image (its mean is an upper
bound on -log P(k); bits/dim = -value / (D ln 2)). This is not comparable with the VAE's Bernoulli
bound on [0, 1] intensities, which is not a density of 8-bit images. Training dequantizes the same way,
so that the model is a density of the dequantized data. 2-D points: log p(x) of the points themselves.

Evaluation, samples and likelihoods use an exponential moving average of the parameters (ema_decay).
eval_step reports fm_loss per test example (fresh t and x0); on ring8 and grid25 also the mode scores of
genjax.models.gan of as many generated points (modes_populated, high_quality, mode_distance).
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from genjax import losses
from genjax.config import check, check_choice
from genjax.data.toy2d import TOY_DATASETS, mixture_modes
from genjax.errors import UserError
from genjax.models.gan import mixture_scores, summarize_mixture
from genjax.nn import MLP
from genjax.nn.conv import Conv, Upsample2x, downsample2x
from genjax.nn.group_norm import GroupNorm
from genjax.nn.precision import compute_dtype, to_float32
from genjax.search import Choice, LogUniform, Uniform
from genjax.train.family import Family, check_batch
from genjax.train.optim import adam, apply_gradients

ARCHITECTURES = ("unet", "mlp")
SOLVERS = ("euler", "heun")
GROUPS = 8  # GroupNorm groups (fewer when a width is not a multiple)


# --- The maths: pure functions of any velocity field v(x [B, ...], t [B]) -> [B, ...] --------------


def straight_path(x0, x1, t):
    """(x_t, u): the point at time t [B] on the straight path from x0 to x1, and its velocity x1 - x0."""
    s = t.reshape(-1, *(1,) * (x1.ndim - 1))
    return (1 - s) * x0 + s * x1, x1 - x0


def flow_matching_loss(velocity, x0, x1, t):
    """||v(x_t, t) - (x1 - x0)||^2 / D per example [B]."""
    xt, target = straight_path(x0, x1, t)
    return jnp.mean(jnp.square(velocity(xt, t) - target).reshape(len(t), -1), axis=-1)


def time_grid(steps: int, power: float = 1.0):
    """steps + 1 times from 0 to 1, t_i = 1 - (1 - i / steps)^power: uniform for power 1, finer towards the
    data (t = 1) for power > 1, where the field of sharp (dequantized) data is stiff."""
    return 1.0 - (1.0 - jnp.arange(steps + 1) / steps) ** power


def integrate(field, y, times, solver: str):
    """y at times[-1] from y at times[0] for dy/dt = field(y, t) (pytrees; t a scalar), one fixed step
    between consecutive times (decreasing times integrate backwards)."""

    def step(i, y):
        t, h = times[i], times[i + 1] - times[i]
        k1 = field(y, t)
        if solver == "euler":
            return jax.tree.map(lambda y, k: y + h * k, y, k1)
        k2 = field(jax.tree.map(lambda y, k: y + h * k, y, k1), t + h)
        return jax.tree.map(lambda y, a, b: y + 0.5 * h * (a + b), y, k1, k2)

    return jax.lax.fori_loop(0, len(times) - 1, step, y)


def at_time(velocity, t, n):
    return lambda x: velocity(x, jnp.full((n,), t, x.dtype))


def ode_sample(velocity, x0, steps: int, solver: str = "heun"):
    """x1: the noise x0 carried from t = 0 to t = 1 in uniform steps (NFE: steps for Euler, 2 * steps for Heun)."""
    return integrate(lambda x, t: at_time(velocity, t, len(x0))(x), x0, time_grid(steps), solver)


def exact_divergence(f, x):
    """(f(x), div f(x) [B]) for f mapping each example of x [B, ...] on its own: D jvps with basis vectors."""
    out, jvp = jax.linearize(f, x)
    basis = jnp.eye(math.prod(x.shape[1:]), dtype=x.dtype).reshape(-1, 1, *x.shape[1:])
    columns = jax.vmap(lambda e: jvp(jnp.broadcast_to(e, x.shape)))(basis)  # [D, B, ...]: J e_i
    return out, jnp.sum(basis * columns, axis=tuple(range(2, x.ndim + 1))).sum(axis=0)


def hutchinson_divergence(f, x, probes):
    """(f(x), mean over probes eps [P, B, ...] of eps^T (df/dx) eps [B]): one jvp per probe, vmapped over them;
    one probe (the default) is called alone, since a vmap over an axis of one made XLA:CPU's likelihood
    program 1.15x slower."""
    out, jvp = jax.linearize(f, x)
    products = probes * (jvp(probes[0])[None] if len(probes) == 1 else jax.vmap(jvp)(probes))
    return out, jnp.mean(products.reshape(*products.shape[:2], -1).sum(-1), axis=0)


def ode_log_likelihood(velocity, x1, steps: int, solver: str = "heun", probes=None, power: float = 1.0):
    """log p1(x1) [B] of the flow of `velocity` from N(0, I): exact divergence, or Hutchinson's with probes;
    the steps from t = 1 back to 0 on time_grid(steps, power)."""

    def field(y, t):
        f = at_time(velocity, t, len(x1))
        return exact_divergence(f, y[0]) if probes is None else hutchinson_divergence(f, y[0], probes)

    x0, integral = integrate(field, (x1, jnp.zeros(len(x1), x1.dtype)), time_grid(steps, power)[::-1], solver)  # int_1^0 div dt
    return losses.diagonal_gaussian_log_prob(x0.reshape(len(x0), -1), 0.0, 0.0) + integral  # log N(x0; 0, I) + ...


def dequantize(images, key):
    """8-bit images k / 255 to (k + u) / 256, u ~ U[0, 1) per pixel."""
    return (jnp.round(images * 255.0) + jax.random.uniform(key, images.shape, images.dtype)) / 256.0


# --- Networks ------------------------------------------------------------------------------------


def time_features(t, dim: int):
    """Sinusoidal features of t in [0, 1] (the transformer's position encoding of 1000 t, as in DDPM)."""
    freqs = jnp.exp(-math.log(10000.0) * jnp.arange(dim // 2) / (dim // 2))
    angles = 1000.0 * t[:, None] * freqs
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class VelocityMLP(nn.Module):
    """v(x, t) for points: an MLP (SiLU) on [x, time features] (features float32, layers in `dtype`)."""

    hidden_sizes: tuple = (256, 256, 256)
    time_dim: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, t):
        h = jnp.concatenate([x, time_features(t, self.time_dim)], axis=-1)
        return MLP(self.hidden_sizes, x.shape[-1], nn.silu, self.dtype)(h)


def group_norm(width, dtype):
    return GroupNorm(num_groups=math.gcd(GROUPS, width), dtype=dtype)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, + the projected time embedding, GroupNorm, SiLU, 3x3 conv (zero init), + skip."""

    width: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, embedding):
        dtype = self.dtype
        h = Conv(self.width, (3, 3), dtype=dtype)(nn.silu(group_norm(x.shape[-1], dtype)(x)))
        h = h + nn.Dense(self.width, dtype=dtype)(nn.silu(embedding))[:, None, None, :]
        h = Conv(self.width, (3, 3), kernel_init=nn.initializers.zeros, dtype=dtype)(nn.silu(group_norm(self.width, dtype)(h)))
        return h + (x if x.shape[-1] == self.width else Conv(self.width, (1, 1), dtype=dtype)(x))


class UNet(nn.Module):
    """v(x, t) for images: a U-Net (Ronneberger et al. 2015) with one level per width in `channels`, each
    `num_res_blocks` ResBlocks then a strided downsampling; a middle block; the mirror image upwards
    (subpixel upsampling, skip concatenated); the time embedding added in every block. The layers compute
    in `dtype` (the time features are float32, cast by the first Dense); v is float32."""

    channels: tuple = (32, 64)
    num_res_blocks: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, t):
        width, dtype = 4 * self.channels[0], self.dtype
        embedding = nn.Dense(width, dtype=dtype)(nn.silu(nn.Dense(width, dtype=dtype)(time_features(t, self.channels[0]))))
        h, skips = Conv(self.channels[0], (3, 3), dtype=dtype)(x), []
        for c in self.channels:
            for _ in range(self.num_res_blocks):
                h = ResBlock(c, dtype)(h, embedding)
            skips.append(h)
            h = downsample2x(h, c, dtype=dtype)
        h = ResBlock(self.channels[-1], dtype)(h, embedding)
        for c in reversed(self.channels):
            h = jnp.concatenate([Upsample2x(c, dtype=dtype)(h), skips.pop()], axis=-1)
            for _ in range(self.num_res_blocks):
                h = ResBlock(c, dtype)(h, embedding)
        h = nn.silu(group_norm(h.shape[-1], dtype)(h))
        return to_float32(Conv(x.shape[-1], (3, 3), kernel_init=nn.initializers.zeros, dtype=dtype)(h))


# --- The family ----------------------------------------------------------------------------------


def validate(config) -> None:
    check_choice(config, "architecture", ARCHITECTURES)
    check_choice(config, "solver", SOLVERS)
    for field in ("channels", "hidden_sizes"):
        check(len(config[field]) > 0 and all(w > 0 for w in config[field]), f"{field} must be positive widths, got {config[field]}")
    for field in ("num_res_blocks", "sample_steps", "likelihood_steps", "hutchinson_probes"):
        check(config[field] > 0, f"{field} must be a positive integer, got {config[field]}")
    check(0 <= config.ema_decay < 1, f"ema_decay must be in [0, 1), got {config.ema_decay}")
    power = config.likelihood_time_power
    check(power >= 1 and math.isfinite(power), f"likelihood_time_power must be >= 1, got {power}")
    check(config.warmup_steps >= 0, f"warmup_steps must be >= 0, got {config.warmup_steps}")
    check(
        not (config.architecture == "unet" and config.dataset in TOY_DATASETS),
        f"architecture 'unet' needs images, and '{config.dataset}' is 2-D points; use architecture 'mlp'",
    )


def make_family(config, dataset) -> Family:
    is_image, data_key, shape = dataset.data_key == "image", dataset.data_key, tuple(dataset.example_shape)
    if config.architecture == "unet":
        scale = 2 ** len(config.channels)
        if not is_image or shape[0] % scale or shape[1] % scale:
            raise UserError(
                f"architecture 'unet' with {len(config.channels)} levels needs images whose sides divide by {scale}, "
                f"got {dataset.name} examples of shape {list(shape)}"
            )
        net = UNet(tuple(config.channels), config.num_res_blocks, compute_dtype(config))
    else:
        net = VelocityMLP(tuple(config.hidden_sizes), dtype=compute_dtype(config))
    warmup = config.warmup_steps
    tx = adam(config, optax.linear_schedule(0.0, config.learning_rate, warmup) if warmup else None)
    solver, ema_decay, num_dims = config.solver, config.ema_decay, math.prod(shape)
    mixture = mixture_modes(dataset.name) if dataset.name in ("ring8", "grid25") else None

    def velocity(params):
        return lambda x, t: net.apply({"params": params}, x, t)

    def model_input(batch, key, where):
        """Images: dequantized and mapped to [-1, 1]; points: as they are."""
        check_batch(batch, data_key, shape, f"flow.{where}")
        return 2.0 * dequantize(batch[data_key], key) - 1.0 if is_image else batch[data_key]

    def fm_losses(params, batch, key):
        dequantize_key, t_key, noise_key = jax.random.split(key, 3)
        x1 = model_input(batch, dequantize_key, "loss")
        t = jax.random.uniform(t_key, (len(x1),))
        return flow_matching_loss(velocity(params), jax.random.normal(noise_key, x1.shape), x1, t)

    def init(key, batch):
        x = model_input(batch, key, "init")
        params = net.init(key, x, jnp.zeros(len(x)))["params"]
        return {"params": params, "opt_state": tx.init(params), "ema_params": params}

    def train_step(state, batch, key):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean(fm_losses(p, batch, key)))(state["params"])
        params, opt_state = apply_gradients(tx, state["params"], state["opt_state"], grads)
        ema_params = optax.incremental_update(params, state["ema_params"], 1 - ema_decay)
        return {"params": params, "opt_state": opt_state, "ema_params": ema_params}, {"loss": loss}

    def eval_step(state, batch, key):
        loss_key, sample_key = jax.random.split(key)
        metrics = {"fm_loss": fm_losses(state["ema_params"], batch, loss_key)}
        if mixture is not None:
            metrics.update(mixture_scores(sample(state, sample_key, len(metrics["fm_loss"])), *mixture))
        return metrics

    def sample(state, key, n):
        x = ode_sample(velocity(state["ema_params"]), jax.random.normal(key, (n, *shape)), config.sample_steps, solver)
        return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0) if is_image else x

    def log_likelihood(state, batch, key):
        dequantize_key, probe_key = jax.random.split(key)
        x = model_input(batch, dequantize_key, "log_likelihood")
        probes = None
        if is_image:
            probes = jax.random.rademacher(probe_key, (config.hutchinson_probes, *x.shape), x.dtype)
        log_p = ode_log_likelihood(velocity(state["ema_params"]), x, config.likelihood_steps, solver, probes, config.likelihood_time_power)
        return log_p - num_dims * math.log(128.0) if is_image else log_p  # + D log 2 (y = 2x - 1) - D log 256 (bins)

    return Family(
        name="flow",
        init=init,
        train_step=train_step,
        eval_step=eval_step,
        sample=sample,
        summarize_eval=summarize_mixture if mixture is not None else None,
        log_likelihood=log_likelihood,
        convolutional=config.architecture == "unet",
    )


def search_space(config) -> dict:
    """The study's ranges: Lucic et al. (2018)'s learning rate and Adam beta1, and the decay of the parameter
    average that samples (0: the raw parameters)."""
    return {"learning_rate": LogUniform(1e-5, 1e-2), "adam_b1": Uniform(0.0, 1.0), "ema_decay": Choice((0.0, 0.99, 0.999))}


FIELDS = {
    "architecture": "velocity network: unet (images) or mlp (2-D points)",
    "channels": "U-Net widths, one resolution level each (28 -> 14 -> 7 for two)",
    "num_res_blocks": "U-Net residual blocks per level and direction",
    "hidden_sizes": "MLP hidden widths (SiLU)",
    "ema_decay": "decay of the parameter average used for eval, samples and likelihood (0: raw parameters)",
    "warmup_steps": "steps of linear learning-rate warm-up from 0 (0: none)",
    "solver": "fixed-step ODE solver: euler (steps evaluations) or heun (2 * steps evaluations)",
    "sample_steps": "ODE steps from noise (t=0) to data (t=1) when sampling",
    "likelihood_steps": "ODE steps from data back to noise for log_likelihood",
    "likelihood_time_power": "their time grid t_i = 1 - (1 - i/steps)^power: 1 uniform, > 1 finer near the data (t=1)",
    "hutchinson_probes": "Rademacher probes of Hutchinson's divergence estimate (images; points use the exact trace)",
}
