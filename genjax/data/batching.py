"""Which examples each training step sees: a pure function of (seed, step).

Epoch e visits the training set in the order `epoch_permutation(seed, e, n)`. Step s belongs to epoch
s // steps_per_epoch with steps_per_epoch = n // batch_size, and takes the next batch_size entries of
that order. The last partial batch of every epoch (n mod batch_size examples) is dropped: every step has
the same shape (no recompilation, no ragged batch statistics), and because each epoch is a fresh
permutation every example is dropped equally often in expectation. A resumed run therefore sees exactly
the batches an uninterrupted run would, whatever the chunking of steps into host calls.

Sharded data (multi-host runs, see genjax.train.parallel): with S shards, shard g holds the examples
g, g + S, g + 2S, ... and every step takes batch_size / S examples from each shard, shard g following the
same rule over its own examples with the permutations keyed (seed, e * S + g). S = 1 is the rule above.

The permutation is drawn on the host with numpy's Philox generator keyed by (seed, epoch), an explicit
key and no global state, so no device round trip is needed to plan a chunk of steps.
"""

import functools

import numpy as np


@functools.lru_cache(maxsize=32)
def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The order in which epoch `epoch` visits the examples: a permutation of range(num_examples)."""
    order = np.random.Generator(np.random.Philox(key=[seed, epoch])).permutation(num_examples)
    order.setflags(write=False)
    return order


def shard_size(num_examples: int, shard: int, num_shards: int) -> int:
    """Number of examples in shard `shard` (examples shard, shard + S, ...)."""
    return len(range(shard, num_examples, num_shards))


def batch_indices(seed: int, num_examples: int, batch_size: int, first_step: int, num_steps: int, num_shards: int = 1) -> np.ndarray:
    """Example indices int32 [num_steps, batch_size] for steps first_step, ..., first_step + num_steps - 1.

    With num_shards S > 1, columns g * B/S ... (g + 1) * B/S - 1 are positions within shard g: example
    g + S * position of the training set.
    """
    if batch_size % num_shards:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {num_shards} data shards")
    per_shard = batch_size // num_shards
    columns = []
    for shard in range(num_shards):
        size = shard_size(num_examples, shard, num_shards)
        steps_per_epoch = size // per_shard
        if steps_per_epoch == 0:
            where = f" in each of {num_shards} shards" if num_shards > 1 else ""
            raise ValueError(f"batch_size {per_shard} is larger than the {size} training examples{where}")
        rows = []
        for step in range(first_step, first_step + num_steps):
            epoch, position = divmod(step, steps_per_epoch)
            start = position * per_shard
            rows.append(epoch_permutation(seed, epoch * num_shards + shard, size)[start : start + per_shard])
        columns.append(np.stack(rows))
    return np.concatenate(columns, axis=1).astype(np.int32)
