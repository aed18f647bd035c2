"""How a step runs on each backend, decided here once for every family.

XLA:CPU runs convolutions on a slow generic kernel when they sit inside a loop body or a `lax.cond` branch:
in a loop it leaves the gradient convolutions in non-canonical dimension orders (jax-ml/jax#12868; a conv
VAE trains about 15x slower in `lax.scan` than step by step), and in a branch the same (a conv kernel
gradient: 26 ms plain, 396 ms in a branch). Families only say whether their step is convolutional
(`Family.convolutional`); the engine and the families ask this module how to run it:

    scan_chunks(platform, convolutional)  a chunk of steps as one lax.scan (True) or one jitted call per step
    update_when(turn, update, operands, convolutional)
                                          an update taken on some steps only (a GAN's generator every
                                          n_critic-th step): a lax.cond that skips the work, except for
                                          convolutional updates on CPU, which compute it every step and keep
                                          it by select
    broadcast_shared_batch(platform)      whether a vmapped group of trials gets the batch they share as one
                                          batch per trial (genjax.train.trials)
    pad_trial_groups(platform)            whether a vmapped group whose size the devices do not divide is
                                          padded to spread over all of them (genjax.train.trials)
    cpu_trials_per_device(convolutional)  how many trials a CPU device (one a core) takes in the study's
                                          groups (genjax.study.groups.spread_groups)
"""

import jax
import jax.numpy as jnp


def select_tree(keep_new: jax.Array, new, old):
    """`new` where the boolean scalar `keep_new` holds, else `old`, leaf by leaf (both pytrees alike)."""
    return jax.tree.map(lambda n, o: jnp.where(keep_new, n, o), new, old)


def scan_chunks(platform: str, convolutional: bool) -> bool:
    """Whether a chunk of train steps runs as one `lax.scan` (else one jitted call per step, dispatched
    asynchronously). The scan saves the per-step dispatch, which on CPU shares the cores that compute."""
    return not (platform == "cpu" and convolutional)


def broadcast_shared_batch(platform: str) -> bool:
    """Whether a vmapped group of trials that share their batch gets it as one batch per trial (each trial
    gathers the shared rows itself, as trials with seeds of their own gather theirs).

    Left unbatched, the shared batch meets the trials' stacked weights [T, d, h] in the first layer, and JAX
    folds the trial axis into that matmul ([B, d] @ [d, T h]): one larger matmul, but the stacked weights are
    transposed to [d, T h] on every step and their gradient back, copies as large as the layer. On CPU those
    copies cost more than the larger matmul saves (measured in the README's vectorized-trials section), so
    there the trials get the batch as their own and run batched matmuls. Elsewhere the fold is left as JAX
    makes it: not measured there."""
    return platform == "cpu"


def pad_trial_groups(platform: str) -> bool:
    """Whether a vmapped group of T trials that the devices do not divide is padded to the next multiple of
    them (copies of its last trial) and spread over all of them, rather than trained on one device.

    On an accelerator the padding runs on devices that would otherwise idle while one of them trains the whole
    group: a group of 3 on 8 TPU cores ends in the time of one trial a core instead of three on one core (not
    measured: no accelerator here). On CPU, with one XLA device per core (the study's process), the padding
    slots take cores from the real trials: T = 3 over 2 devices, padded to 4 against 3 on one device, trained
    the MLP VAE 12% faster and the MLP GAN 13% slower (side by side; the README's vectorized-trials section), so CPU groups
    are not padded; the study's CPU groups are multiples of the devices anyway
    (genjax.study.groups.spread_groups). A multi-process run always pads: every process must take part."""
    return platform != "cpu"


def cpu_trials_per_device(convolutional: bool) -> int:
    """Trials a device of a CPU group trains (the study's process has one XLA:CPU device per core).

    MLP families: two, each core running batched matmuls over its pair (2 a core beat 1 and 4: the README's
    vectorized-trials section). Convolutional families: one, since XLA:CPU runs a vmapped convolution (a grouped
    convolution over the trials) far slower than a plain one: over 2 devices, `python benchmarks/trials.py
    --trials 2 4 --steps 400 --chunk 10` trained DCGAN, LSGAN, SNGAN and InfoGAN groups of 2 at 1.11-1.16x the
    engine's one-at-a-time images/s and groups of 4 at 0.50-0.57x; in a study (`--families dcgan,sngan --settings 6
    --data_sizes 500`, budgets of 3, 6 and 12 s) their grouped trials reached 500-520 steps at 12 s against
    429-458 for the same trials alone. WGAN-GP (1.04x) and flow matching (0.85x) stay one at a time."""
    return 1 if convolutional else 2


def update_when(turn: jax.Array, update, operands: tuple, convolutional: bool) -> tuple:
    """update(*operands) where the boolean scalar `turn` holds, else `operands` unchanged.

    Both forms give the same values; they differ in cost only: the branch skips the update's work, the select
    computes it and discards it, which on CPU is still faster when the update has convolutions."""

    def by_branch(*operands):
        return jax.lax.cond(turn, update, lambda *unchanged: unchanged, *operands)

    def by_select(*operands):
        return select_tree(turn, tuple(update(*operands)), operands)

    if not convolutional:
        return by_branch(*operands)
    return jax.lax.platform_dependent(*operands, cpu=by_select, default=by_branch)
