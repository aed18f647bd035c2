"""Data parallelism with jit and shardings on a 1-D device mesh named 'data'.

The state is replicated on every device; a batch is split along its leading axis. With global-batch
semantics the code is the same on 1 CPU, 8 TPU cores or many hosts: `batch_size` is the global batch,
each of the D devices holds batch_size / D examples, and the compiled step computes exactly the
single-device loss (XLA inserts the all-reduce of the gradients). Random numbers are drawn with the
global shape from one key, and JAX's partitionable Threefry makes them independent of the device count.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from genjax.errors import UserError

DATA_AXIS = "data"


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh over the first `num_devices` devices (0: all devices of all processes)."""
    devices = jax.devices()
    if num_devices > len(devices):
        raise UserError(f"num_devices={num_devices} but only {len(devices)} devices are visible; use 0 for all")
    chosen = devices[: num_devices or len(devices)]
    return Mesh(np.array(chosen), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Split `axis` (the batch axis) over the mesh; other axes are whole."""
    return NamedSharding(mesh, PartitionSpec(*([None] * axis), DATA_AXIS))
