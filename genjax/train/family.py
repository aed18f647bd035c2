"""The Family protocol: what a model family gives the engine.

A family is a handful of pure functions over pytrees. The engine compiles, shards, loops, checkpoints
and logs them; it never looks inside the state.

    init(key, batch)              -> state            params, optimizer states, batch statistics, ...
    train_step(state, batch, key) -> (state, metrics) one update; metrics: dict of scalars
    eval_step(state, batch, key)  -> metrics          dict of per-example arrays, leading axis = batch
    sample(state, key, n)         -> data             n generated examples in data space (None for a
                                                      non-generative family, e.g. genjax's metric classifier)
    reconstruct(state, batch, key)-> data             families with an encoder; else None

`batch` is a dict of model inputs (see genjax.data.to_model_batch): float32 'image' [B, H, W, C] in [0, 1]
or 'point' [B, 2], and int32 'label' [B]. Two-player families (GANs) keep both networks and both optimizer
states in one state pytree and update both inside one train_step.

The engine's train batches also carry int32 'step', the run's step number (a scalar): one value for every
trial of a vectorized group (genjax.train.trials), so a schedule on it (a GAN's generator update every
n_critic-th step) stays a branch under jax.vmap, where a schedule on a count in the state, one per trial, would
turn into a select that computes the update at every step and discards it.

Optional hooks:
    summarize_eval(means)             turns the test-set means of eval_step's outputs into scalar metrics
                                      (e.g. a code-usage histogram into a perplexity); default: identity
    figures(state, test, key, workdir) writes family-specific figures at the end of a run
    progress_metrics                  train metrics shown on the progress bar
    importance_log_weights(state, batch, key, k) -> [B, k]: log p(x, z_k) - log q(z_k | x) for z_k ~ q(z|x),
                                      for latent-variable families; gives the IWAE likelihood bound
    log_likelihood(state, batch, key) -> [B]: log p(x) itself in nats per example (exact up to the
                                      family's stated estimator, e.g. a flow's ODE solver and trace estimate)

    encode(state, batch) -> codes     the latent representation of a batch ([B, ...]; a VAE's posterior mean)
    decode(state, codes) -> data      data from such codes; with encode, gives latent interpolations
    ex_post(state, train) -> state    a fit after training on the training set, on the host (e.g. a mixture
                                      fitted to the training codes, genjax.models.ex_post); the engine applies
                                      it before every evaluation and checkpoint. The state it returns has the
                                      same structure; leaves it refits may be numpy arrays
    conditional                       True when `sample` draws n // num_classes examples of each class in
                                      class order, so that sample grids get one row per class
    codebook                          True when eval reports code usage (perplexity, used_fraction)
    convolutional                     True when train_step runs convolutions: the engine's execution policy
                                      (genjax.train.policy) runs such steps differently on CPU

What a family can do, its capabilities (CAPABILITIES), follows from the hooks it provides; the metrics
(genjax.metrics.registry) and the report ask for capabilities, never for family names.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

Batch = dict
Metrics = dict
State = object

CAPABILITIES = {
    "sample": "draws new examples (sample)",
    "reconstruct": "reconstructs its inputs (reconstruct)",
    "latent": "maps examples to codes and back (encode, decode): latent interpolations",
    "likelihood_bound": "a lower bound on log p(x) by importance weights (importance_log_weights)",
    "exact_likelihood": "log p(x) itself (log_likelihood)",
    "codebook": "a discrete codebook whose usage eval reports",
    "conditional": "class-conditional sampling, one class per grid row",
}


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family's pure functions (see the module docstring)."""

    name: str
    init: Callable[[jax.Array, Batch], State]
    train_step: Callable[[State, Batch, jax.Array], tuple[State, Metrics]]
    eval_step: Callable[[State, Batch, jax.Array], Metrics]
    sample: Callable[[State, jax.Array, int], jax.Array] | None = None
    reconstruct: Callable[[State, Batch, jax.Array], jax.Array] | None = None
    summarize_eval: Callable[[Metrics], Metrics] | None = None
    figures: Callable | None = None
    progress_metrics: tuple = ("loss",)
    conditional: bool = False
    importance_log_weights: Callable | None = None
    encode: Callable[[State, Batch], jax.Array] | None = None
    decode: Callable[[State, jax.Array], jax.Array] | None = None
    log_likelihood: Callable[[State, Batch, jax.Array], jax.Array] | None = None
    ex_post: Callable | None = None
    codebook: bool = False
    convolutional: bool = False

    @property
    def capabilities(self) -> frozenset:
        """The names of CAPABILITIES this family has, from the hooks it provides."""
        has = {
            "sample": self.sample is not None,
            "reconstruct": self.reconstruct is not None,
            "latent": self.encode is not None and self.decode is not None,
            "likelihood_bound": self.importance_log_weights is not None,
            "exact_likelihood": self.log_likelihood is not None,
            "codebook": self.codebook,
            "conditional": self.conditional,
        }
        return frozenset(name for name, present in has.items() if present)


def init_program(init: Callable, key, batch: Batch, **jit_options) -> tuple[Callable, list]:
    """(program, constants): init(key, batch) is program(constants, key, batch), compiled with the arrays init
    closes over as its arguments (`jit_options`: jax.jit's, e.g. out_shardings).

    A later stage's init carries an earlier stage's trained parameters (a VQ-VAE prior's frozen VQ-VAE). Closed
    over by a plain jax.jit they are constants of the program: a new program for every earlier-stage checkpoint,
    compiled again (about a second for the VQ-VAE prior, whose persistent-cache entry held them: 400 KB) each time
    the study fits a prior at a budget point. As arguments, every such fit of one shape runs one program."""
    closed, shapes = jax.make_jaxpr(init, return_shape=True)(key, batch)
    structure = jax.tree.structure(shapes)

    def program(constants, key, batch):
        return jax.tree.unflatten(structure, jax.core.eval_jaxpr(closed.jaxpr, constants, *jax.tree.leaves((key, batch))))

    return jax.jit(program, **jit_options), closed.consts


def initial_state(init: Callable, key, batch: Batch, **jit_options) -> State:
    """init(key, batch) by its init_program: the arrays it closes over are arguments, not constants."""
    program, constants = init_program(init, key, batch, **jit_options)
    return program(constants, key, batch)


def count_params(state) -> int:
    """Number of trainable parameters: the sizes of all leaves below any key named 'params'."""
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return sum(
        leaf.size for path, leaf in leaves if any(getattr(entry, "key", None) == "params" for entry in path) and hasattr(leaf, "size")
    )


def check_batch(batch: dict, key: str, example_shape: tuple, where: str) -> None:
    """Raise ValueError unless batch[key] is a float array of examples shaped `example_shape`.

    Families call it at the top of their functions: it runs while JAX traces, so it costs nothing per step,
    and it turns a deep Flax shape error into one sentence that names the mismatch.
    """
    if key not in batch:
        raise ValueError(f"{where}: the batch has no '{key}' (it has {sorted(batch)}); build it with genjax.data.to_model_batch")
    x = batch[key]
    if tuple(x.shape[1:]) != tuple(example_shape):
        raise ValueError(
            f"{where}: batch['{key}'] holds examples of shape {list(x.shape[1:])}, but the model was built for {list(example_shape)}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{where}: batch['{key}'] is {x.dtype}; models take float inputs in [0, 1] (genjax.data.to_model_batch)")
