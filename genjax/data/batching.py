"""Which examples each training step sees: a pure function of (seed, step).

Epoch e visits the training set in the order `epoch_permutation(seed, e, n)`. Step s belongs to epoch
s // steps_per_epoch with steps_per_epoch = n // batch_size, and takes the next batch_size entries of
that order. The last partial batch of every epoch (n mod batch_size examples) is dropped: every step has
the same shape (no recompilation, no ragged batch statistics), and because each epoch is a fresh
permutation every example is dropped equally often in expectation. A resumed run therefore sees exactly
the batches an uninterrupted run would, whatever the chunking of steps into host calls.

The permutation is drawn on the host with numpy's Philox generator keyed by (seed, epoch), an explicit
key and no global state, so no device round trip is needed to plan a chunk of steps.
"""

import functools

import numpy as np


@functools.lru_cache(maxsize=8)
def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The order in which epoch `epoch` visits the examples: a permutation of range(num_examples)."""
    order = np.random.Generator(np.random.Philox(key=[seed, epoch])).permutation(num_examples)
    order.setflags(write=False)
    return order


def batch_indices(seed: int, num_examples: int, batch_size: int, first_step: int, num_steps: int) -> np.ndarray:
    """Example indices int32 [num_steps, batch_size] for steps first_step, ..., first_step + num_steps - 1."""
    steps_per_epoch = num_examples // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the {num_examples} training examples")
    rows = []
    for step in range(first_step, first_step + num_steps):
        epoch, position = divmod(step, steps_per_epoch)
        start = position * batch_size
        rows.append(epoch_permutation(seed, epoch, num_examples)[start : start + batch_size])
    return np.stack(rows).astype(np.int32)
