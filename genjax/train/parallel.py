"""Data parallelism with jit and shardings on a 1-D device mesh named 'data', on one host or many.

The state is replicated on every device; a batch is split along its leading axis. With global-batch
semantics the code is the same on 1 CPU, 8 TPU cores or many hosts: `batch_size` is the global batch,
each of the D devices holds batch_size / D examples, and the compiled step computes exactly the
single-device loss (XLA inserts the all-reduce of the gradients). Random numbers are drawn with the
global shape from one key, and JAX's partitionable Threefry makes them independent of the device count.

Training data lives on the devices. The training set is split into S strided shards (shard g holds
examples g, g + S, g + 2S, ...) and device d of the mesh holds shard d * S // D; with S = 1 (one process)
every device holds the whole set. Each device gathers its part of the global batch from the shard it holds
(`gather_batch`), so no example ever crosses devices. A process only materialises the shards of its own
devices: with S = the number of processes, each keeps 1/S of the data.

Many hosts: every process runs the same program on its own devices (`initialize_distributed`), and every
host value (indices, keys) enters a computation through `global_array`, which gives each process's devices
their part of a value that every process computes identically.
"""

import logging
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from genjax.errors import UserError

DATA_AXIS = "data"
COORDINATOR_VARIABLE = "JAX_COORDINATOR_ADDRESS"


def initialize_distributed(requested: bool) -> None:
    """Join a multi-process run when `requested` or when JAX_COORDINATOR_ADDRESS is set; else do nothing.

    With JAX_COORDINATOR_ADDRESS (host:port of process 0), the process count and this process's index come
    from JAX_NUM_PROCESSES and JAX_PROCESS_ID. Without it, JAX finds them itself on a Cloud TPU pod, under
    SLURM, Open MPI or Kubernetes. Must run before any other JAX call; a second call is a no-op.
    """
    address = os.environ.get(COORDINATOR_VARIABLE)
    if jax.distributed.is_initialized() or not (requested or address):
        return
    arguments = {}
    for name, variable in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
        if os.environ.get(variable):
            arguments[name] = int(os.environ[variable])
    try:
        jax.distributed.initialize(**arguments)
    except (ValueError, RuntimeError) as error:
        raise UserError(
            f"could not start the multi-process run ({error}); set {COORDINATOR_VARIABLE}=host:port, "
            "JAX_NUM_PROCESSES and JAX_PROCESS_ID on every process, or run where JAX detects the cluster"
        ) from None
    logging.getLogger("genjax").info(
        "process %d of %d, %d local devices of %d", jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count()
    )


def is_primary() -> bool:
    """Whether this process writes the run directory's files (process 0)."""
    return jax.process_index() == 0


def wait_for_all_processes(name: str) -> None:
    """A barrier across processes (nothing to wait for in a single-process run)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _every_process(value) -> np.ndarray:
    """`value` of each process, stacked; every process must call this at the same point."""
    if jax.process_count() == 1:
        return np.array([value])
    return multihost_utils.process_allgather(np.array(value))


def any_process(flag: bool) -> bool:
    """Whether `flag` is true on any process; every process must call this at the same point."""
    return bool(np.any(_every_process(flag)))


def least_over_processes(value: int) -> int:
    """The least of `value` over the processes; every process must call this at the same point."""
    return int(np.min(_every_process(value)))


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh over the first `num_devices` devices (0: all devices of all processes)."""
    devices = jax.devices()
    if num_devices > len(devices):
        raise UserError(f"num_devices={num_devices} but only {len(devices)} devices are visible; use 0 for all")
    if num_devices and jax.process_count() > 1 and num_devices != len(devices):
        raise UserError(f"a multi-process run uses all {len(devices)} devices; drop num_devices={num_devices}")
    chosen = devices[: num_devices or len(devices)]
    return Mesh(np.array(chosen), (DATA_AXIS,))


def small_run_devices() -> int:
    """`num_devices` for a small run beside others (a study's trial alone, its stages, the metric classifier): one
    on a single-process CPU backend, else 0 (all). A process with one CPU device per core (the study's,
    genjax.xla_flags.add_host_devices) would otherwise split the run's batch over the cores with an all-reduce each
    step: half the speed of one device, whose programs use every core, and XLA:CPU's in-process all-reduce can
    deadlock (a conv net's did)."""
    return 1 if jax.default_backend() == "cpu" and jax.process_count() == 1 else 0


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Split `axis` (the batch axis) over the mesh; other axes are whole."""
    return NamedSharding(mesh, PartitionSpec(*([None] * axis), DATA_AXIS))


def global_array(value, sharding: NamedSharding) -> jax.Array:
    """A host value that every process computes identically, placed with `sharding` on all devices."""
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def shard_of_device(position: int, num_devices: int, num_shards: int) -> int:
    """The data shard held by the device at `position` in the mesh: consecutive devices share a shard."""
    return position * num_shards // num_devices


def put_data_shards(mesh: Mesh, arrays: dict, num_shards: int) -> dict:
    """The dataset on the devices: global arrays [D * m, ...] split over the mesh, block d = shard d * S // D.

    Shard g is arrays[g::S], padded with zeros to m = ceil(n / S) examples (the padding is never indexed).
    Each process builds only the blocks of its own devices.
    """
    num_devices = mesh.devices.size
    num_examples = len(next(iter(arrays.values())))
    block = -(-num_examples // num_shards)
    sharding = batch_sharded(mesh)

    def put(array):
        def device_block(index):
            shard = array[shard_of_device((index[0].start or 0) // block, num_devices, num_shards) :: num_shards]
            padding = np.zeros((block - len(shard),) + shard.shape[1:], shard.dtype)
            return np.concatenate([shard, padding]) if len(padding) else shard

        return jax.make_array_from_callback((num_devices * block,) + array.shape[1:], sharding, device_block)

    return {key: put(np.asarray(array)) for key, array in arrays.items()}


def gather_batch(mesh: Mesh, blocks: dict, indices: jax.Array) -> dict:
    """The global batch {key: [B, ...]} split over the mesh: example j is blocks[key][indices[j]] taken
    from the block of the device that holds position j (indices count within that block)."""

    def local_gather(blocks, indices):
        return jax.tree.map(lambda array: array[indices], blocks)

    spec = PartitionSpec(DATA_AXIS)
    return jax.shard_map(local_gather, mesh=mesh, in_specs=(spec, spec), out_specs=spec)(blocks, indices)
