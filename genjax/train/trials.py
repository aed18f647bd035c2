"""Trials as an axis: T settings of one family trained in one compiled program.

A group is one family, one seed and T settings of its continuous hyperparameters (learning rate, Adam's beta1,
a KL or gradient-penalty weight: the fields a family only computes with). The family is built inside the
traced function with those fields as traced scalars, so `jax.vmap` over a leading trial axis of the state, the
hyperparameters and nothing else trains every setting at once; the batch of each step and the keys are the
seed's, shared by all trials, so trial i sees exactly the data and random numbers of that setting trained
alone (`fit` with the same seed) and ends equal to it to float tolerance. (On CPU each trial of a vmapped step
gathers the shared batch as its own, genjax.train.policy.broadcast_shared_batch: left unbatched, JAX would
fold the trial axis into the first layer's matmul at the price of transposing the stacked weights every step.)
Fields that decide shapes or Python control flow (latent size, widths, n_critic) cannot be traced: settings
that differ in them form separate groups (`group_key`).

A group may also give each trial a seed of its own (`seeds`, e.g. the study's re-seeds of one setting): trial i
then draws its initial state, its batches and its step keys from seed i, exactly as `fit` with that seed, so it
ends equal to that run; the batches become one per trial (gathered inside the vmapped step). The dataset stays
the one given: a 2-D toy mixture, whose training sample is drawn from the seed, cannot be re-seeded this way.

A trial whose loss (any of its step's metrics) turns non-finite is recorded as diverged at that step
(`diverged_at`, 0: never), is frozen and is not evaluated again. The check is per step but the freeze is per
call of `train`: at its end every diverged trial gets back its state from the call's start (its last finite
state at a chunk boundary), so its state stops changing; within the call it trains on, non-finite, which
leaves the other trials bitwise unaffected because the trials' arithmetic is element by element along the
trial axis. Freezing every step instead (a select between the old and new state) cost 30% of a vmapped MLP
VAE step and 10% of an MLP GAN's on CPU (T = 4, side by side): it keeps both states alive and breaks XLA's
in-place update of the parameters; once per call it is one copy and one select of the state per chunk.

On CPU a chunk of steps runs in one lax.scan for families without convolutions (the execution policy,
genjax.train.policy); convolutional families run one jitted call per step. Programs are compiled ahead of
their first call, so `compile_seconds` is apart from the time `train` takes. With several devices (and
vmap), the trial axis of the state and of the hyperparameters is sharded over them (a 1-D mesh 'trials'; the
batches are replicated) and each device vmaps its own trials (`shard_map`, `_per_device`: no collective in the
step; left to XLA's partitioner, the conv families' steps gathered every trial's weights to every device):
8 devices train 8 groups' worth of trials at once. A group whose T the devices do
not divide is, on accelerators and in multi-process runs (`pad`, genjax.train.policy.pad_trial_groups),
padded to the next multiple (`slots`): the padding slots train copies of the last trial and are never seen
outside (`train`'s metrics, `diverged` and `trial_state` are the T real trials', and a checkpoint holds the
real trials only, `checkpointed` and `from_checkpoint`, so it restores on any number of devices); their
compute is the real trials' cost, so a group of 3 on 8 TPU cores takes the time of one trial a core rather
than of 3 on one core. Unpadded (CPU), such a group trains on one device, as does a group of one trial in one
process. The devices are those of every process (`jax.devices()`): in a multi-process run
(genjax.train.parallel, the engine's jax.distributed path) every process builds the same group and calls
`train` with the same arguments, host values enter through `global_array`, each process's devices train
their share of the trials, and `trial_state` and `diverged` gather a trial's state and the divergence steps
to every process. Trials never communicate during training, so the trial axis needs no collective but that
gather.
"""

import dataclasses
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from genjax import experiment
from genjax.config import with_values
from genjax.data import Dataset, batch_indices, to_model_batch
from genjax.data.toy2d import TOY_DATASETS
from genjax.errors import UserError
from genjax.train import policy
from genjax.train.chunks import program_flops, tree_all_finite
from genjax.train.loop import Keys
from genjax.train.parallel import global_array


def group_key(setting: dict, traced: tuple) -> tuple:
    """The fields of a setting that are not traced: settings with equal keys train in one group."""
    return tuple(sorted((k, v) for k, v in setting.items() if k not in traced))


@dataclasses.dataclass
class TrialGroup:
    """T settings of `config`'s family that differ only in the `traced` fields, trained together.

    settings: one dict {field: value} per trial, each with exactly the traced fields.
    vectorize: 'vmap' (one batched program over the trial axis) or 'unroll' (the trials' unbatched steps side
    by side in one program: no batched matmuls or convolutions, which XLA:CPU runs slowly; compile time
    grows with the number of trials). Both give the same trials.
    """

    config: ml_collections.ConfigDict
    settings: list
    dataset: Dataset
    vectorize: str = "vmap"
    seeds: list | None = None  # one per trial (default: config.seed for every trial)
    pad: bool | None = None  # pad to spread over every device (default: genjax.train.policy.pad_trial_groups)

    def __post_init__(self):
        self.traced = tuple(sorted(self.settings[0]))
        if self.vectorize not in ("vmap", "unroll"):
            raise ValueError(f"unknown vectorize '{self.vectorize}'; choose 'vmap' or 'unroll'")
        if any(tuple(sorted(s)) != self.traced for s in self.settings):
            raise ValueError(f"every setting of a group must give the same fields {list(self.traced)}")
        self.seeds = [int(self.config.seed)] * self.size if self.seeds is None else [int(seed) for seed in self.seeds]
        if len(self.seeds) != self.size:
            raise ValueError(f"give one seed per trial: {len(self.seeds)} seeds for {self.size} settings")
        self.per_trial_seeds = len(set(self.seeds)) > 1
        if self.per_trial_seeds and self.dataset.name in TOY_DATASETS:
            raise ValueError(f"{self.dataset.name}'s training sample is drawn from the seed: train its seeds apart")
        for setting in self.settings:  # concrete values, checked like any run's
            concrete = self.config.copy_and_resolve_references()
            concrete.update(setting)
            self.model = experiment.validate(concrete)
        devices = jax.devices()  # of every process
        if jax.process_count() > 1 and self.vectorize != "vmap":
            raise UserError(f"a multi-process run spreads a group's trials over every device: use vectorize 'vmap', not '{self.vectorize}'")
        pad = policy.pad_trial_groups(devices[0].platform) if self.pad is None else self.pad
        fits = self.size > 1 and (self.size % len(devices) == 0 or pad)
        spread = len(devices) > 1 and self.vectorize == "vmap" and (fits or jax.process_count() > 1)
        # the trial axis padded to a multiple of the devices with copies of the last trial (its setting and seed)
        self.slots = -(-self.size // len(devices)) * len(devices) if spread else self.size
        self._padded = list(range(self.size)) + [self.size - 1] * (self.slots - self.size)
        mesh = Mesh(np.array(devices if spread else devices[:1]), ("trials",))
        self.spread = spread
        self.trial_sharding, self.replicated = NamedSharding(mesh, P("trials")), NamedSharding(mesh, P())
        self.keys = Keys.from_seed(self.config.seed)
        trial_keys = [Keys.from_seed(self.seeds[i]) for i in self._padded]
        # each trial's init and train keys [T, 2], sharded like the state (used when the seeds differ)
        self.init_keys, self.train_keys = (
            global_array(np.stack([np.asarray(getattr(k, name)) for k in trial_keys]), self.trial_sharding) for name in ("init", "train")
        )
        self.family = self.model.make_family(self.config, self.dataset)  # for its flags; the traced copies compute
        self.scan = policy.scan_chunks(devices[0].platform, self.family.convolutional)
        self.broadcast_batch = policy.broadcast_shared_batch(devices[0].platform)
        self.data = {key: global_array(value, self.replicated) for key, value in self.dataset.arrays.items()}
        # a trial's state, and the divergence steps, gathered to every device of every process (in a multi-process
        # run; one process copies the shards to the host instead: XLA:CPU's in-process collectives can deadlock
        # when its thread pool, one thread a core, is running the other device's part)
        self._take = jax.jit(lambda tree, index: jax.tree.map(lambda leaf: leaf[index], tree), out_shardings=self.replicated)
        self._gather = jax.jit(lambda tree: tree, out_shardings=self.replicated)
        # the padding slots cut off a tree's trial axis (`axis`), and put back as copies of the last trial
        cut = lambda tree, axis: jax.tree.map(lambda leaf: jax.lax.slice_in_dim(leaf, 0, self.size, axis=axis), tree)  # noqa: E731
        self._cut = jax.jit(cut, static_argnums=1, out_shardings=self.replicated)
        padded = np.array(self._padded)
        self._pad = jax.jit(lambda tree: jax.tree.map(lambda leaf: leaf[padded], tree), out_shardings=self.trial_sharding)
        self._chunk = jax.jit(self._train_chunk, donate_argnums=0)
        self._step = jax.jit(self._one_step, donate_argnums=0)
        self._freeze_jit = jax.jit(self._freeze, donate_argnums=1)
        self._executables, self.compile_seconds = {}, 0.0

    @property
    def size(self) -> int:
        return len(self.settings)

    def family_for(self, hyper: dict):
        """The family with this trial's hyperparameters (traced scalars) in its config."""
        return self.model.make_family(with_values(self.config, hyper), self.dataset)

    def init(self) -> dict:
        """{'state': the trials' states stacked on axis 0, 'diverged_at': int32 [T] (0: not diverged), 'hyper':
        {field: float32 [T]}, the traced values (an argument of the programs, not a constant: it is sharded)}."""
        example = to_model_batch(self.dataset.take(np.arange(self.config.batch_size)))
        values = {name: np.float32([self.settings[i][name] for i in self._padded]) for name in self.traced}
        hyper = {name: global_array(value, self.trial_sharding) for name, value in values.items()}
        init = self._per_device(jax.vmap(lambda hyper, key: self.family_for(hyper).init(key, example)))
        state = jax.jit(init, out_shardings=self.trial_sharding)(hyper, self.init_keys)
        return {"state": state, "diverged_at": global_array(np.zeros(self.slots, np.int32), self.trial_sharding), "hyper": hyper}

    def _per_device(self, vmapped):
        """`vmapped` (a function vmapped over the trial axis of every argument and result) run by each device on
        its own trials (`shard_map`) when the group spreads over several. Left to XLA's partitioner, a vmapped
        convolution (JAX batches it as a grouped convolution, the trial axis folded into the channels) was not
        split by trial: the conv families' step gathered every trial's weights to every device (102-150
        all-gathers a step, DCGAN to WGAN-GP), so each device computed the whole group, and on CPU the in-process
        all-gathers deadlocked (seen). Per device, the trials need no collective at all."""
        if not self.spread:
            return vmapped
        spec = P("trials")
        return jax.shard_map(vmapped, mesh=self.trial_sharding.mesh, in_specs=spec, out_specs=spec)

    def checkpointed(self, group: dict) -> dict:
        """`group` with its T real trials only (the padding slots cut): what a checkpoint holds, so that it
        restores on any number of devices. Restore it into `checkpointed(init())` and pass it to `from_checkpoint`."""
        return self._real_trials(group, 0)

    def from_checkpoint(self, group: dict) -> dict:
        """A `checkpointed` group padded again (copies of its last trial) and placed on this group's devices."""
        return self._pad(group) if self.slots > self.size else group

    def _batch(self, indices):
        return to_model_batch({k: jnp.take(v, indices, axis=0) for k, v in self.data.items()})

    def _one_step(self, group, step, indices, train_keys):
        """indices: int32 [B], the shared batch, or [T, B], one batch per trial when the seeds differ."""
        vmapped = self.vectorize == "vmap" and self.slots > 1
        # each trial gathers its own batch when its seed is its own, and on CPU (the policy) also when the batch
        # is shared, so that no matmul folds the trial axis and no stacked weight is transposed
        own_rows = self.per_trial_seeds or (vmapped and self.broadcast_batch)
        shared_batch = None if own_rows else self._batch(indices)
        shared_key = jax.random.fold_in(self.keys.train, step)

        def trial(state, hyper, diverged_at, rows, train_key):
            # the step from outside the vmap: one value for the trials, so a schedule on it stays a branch
            batch = {**(self._batch(rows) if own_rows else shared_batch), "step": step}
            key = jax.random.fold_in(train_key, step) if self.per_trial_seeds else shared_key
            new_state, metrics = self.family_for(hyper).train_step(state, batch, key)
            # the metrics (the loss) decide: a scalar check, where checking every leaf of the state cost 30%
            diverged_at = jnp.where((diverged_at == 0) & ~tree_all_finite(metrics), step + 1, diverged_at)
            return new_state, diverged_at, metrics

        rows = indices if self.per_trial_seeds else jnp.broadcast_to(indices, (self.slots, *indices.shape))  # [T, B]
        inputs = (group["state"], group["hyper"], group["diverged_at"], rows, train_keys)
        if vmapped:
            state, diverged_at, metrics = self._per_device(jax.vmap(trial))(*inputs)
        else:  # each trial's step unbatched (one trial: as `fit` runs it), all in one program
            outputs = [trial(*jax.tree.map(lambda leaf: leaf[i], inputs)) for i in range(self.slots)]
            state, diverged_at, metrics = jax.tree.map(lambda *leaves: jnp.stack(leaves), *outputs)
        return {"state": state, "diverged_at": diverged_at, "hyper": group["hyper"]}, metrics

    def _train_chunk(self, group, steps, indices, train_keys):
        trained, metrics = jax.lax.scan(lambda g, xs: self._one_step(g, *xs, train_keys), group, (steps, indices))
        return self._freeze(group["state"], trained), metrics

    @staticmethod
    def _freeze(start_state, group):
        """`group` with every diverged trial's state put back to `start_state` (the chunk's start)."""
        trained_on = group["diverged_at"] == 0
        return {**group, "state": jax.vmap(policy.select_tree)(trained_on, group["state"], start_state)}

    def train(self, group: dict, first_step: int, num_steps: int) -> tuple[dict, dict]:
        """Steps first_step .. first_step + num_steps - 1 of every trial; returns (group, metrics [steps, T])."""
        indices = self._indices(first_step, num_steps)  # [steps, B] or, seeds differing, [steps, T, B]
        steps = np.arange(first_step, first_step + num_steps, dtype=np.int32)
        if self.scan:
            args = (group, global_array(steps, self.replicated), global_array(indices, self.replicated), self.train_keys)
            group, metrics = self._compiled(self._chunk, num_steps, *args)(*args)
        else:
            start, per_step = jax.tree.map(jnp.copy, group["state"]), []  # the steps donate theirs
            for step, row in zip(steps, indices):
                args = (group, global_array(step, self.replicated), global_array(row, self.replicated), self.train_keys)
                group, step_metrics = self._compiled(self._step, 1, *args)(*args)
                per_step.append(step_metrics)
            group, metrics = self._freeze_jit(start, group), jax.tree.map(lambda *values: jnp.stack(values), *per_step)
        return group, self._real_trials(metrics, 1)

    def _real_trials(self, tree, axis: int):
        """`tree` with the padding slots cut off its trial axis (`axis`); in one process, as numpy arrays on the
        host: there it is a copy of the shards, where a program cutting it would gather them with a collective,
        and XLA:CPU's in-process collectives deadlock (seen, as above)."""
        if self.slots == self.size:
            return tree
        if jax.process_count() == 1:
            return jax.tree.map(lambda leaf: np.asarray(leaf).take(np.arange(self.size), axis), tree)
        return self._cut(tree, axis)

    def _indices(self, first_step: int, num_steps: int) -> np.ndarray:
        def of(seed):
            return batch_indices(seed, self.dataset.num_examples, self.config.batch_size, first_step, num_steps)

        return np.stack([of(self.seeds[i]) for i in self._padded], axis=1) if self.per_trial_seeds else of(self.config.seed)

    def _compiled(self, function, num_steps: int, *args):
        """`function` compiled for these arguments, once per chunk length (its time: compile_seconds)."""
        key = (function is self._chunk, num_steps)
        if key not in self._executables:
            started = time.perf_counter()
            self._executables[key] = function.lower(*args).compile()
            self.compile_seconds += time.perf_counter() - started
        return self._executables[key]

    def flops_per_trial_step(self, group: dict) -> float:
        """XLA's count of the floating-point operations of one step of one trial: the group's one-step program
        (lowered, not compiled) divided by the trials it computes: its slots (T and the padding), or, spread
        over devices, one device's share of them (the program is then one device's, `_per_device`).
        Comparable with the engine's flops_per_step of one run."""
        row = global_array(self._indices(0, 1)[0], self.replicated)
        flops = program_flops(self._step.lower(group, global_array(np.int32(0), self.replicated), row, self.train_keys))
        return flops / (self.slots // self.trial_sharding.mesh.size)

    def trial_state(self, group: dict, index: int):
        """Trial `index`'s state, as one run's state, on the host of every process (numpy arrays)."""
        if jax.process_count() == 1:  # every shard is this process's: copied to the host, with no collective
            return jax.tree.map(lambda leaf: np.asarray(leaf)[index], group["state"])
        return jax.device_get(self._take(group["state"], global_array(np.int32(index), self.replicated)))

    def diverged(self, group: dict) -> np.ndarray:
        """The step at which each trial's loss became non-finite (0: never), int [T], on every process."""
        if jax.process_count() == 1:
            return np.asarray(group["diverged_at"])[: self.size]
        return np.asarray(jax.device_get(self._gather(group["diverged_at"])))[: self.size]
