"""Class conditioning: one-hot labels appended to vectors or to images, and class-ordered label rows."""

import jax
import jax.numpy as jnp


def with_labels(x: jax.Array, labels: jax.Array | None, num_classes: int) -> jax.Array:
    """x [B, D] with one-hot labels appended ([B, D + num_classes]); x itself when num_classes is 0."""
    if not num_classes:
        return x
    return jnp.concatenate([x, jax.nn.one_hot(labels, num_classes, dtype=x.dtype)], axis=-1)


def with_label_channels(images: jax.Array, labels: jax.Array | None, num_classes: int) -> jax.Array:
    """images [B, H, W, C] with the one-hot labels broadcast as num_classes constant channels."""
    if not num_classes:
        return images
    b, h, w, _ = images.shape
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=images.dtype)
    return jnp.concatenate([images, jnp.broadcast_to(one_hot[:, None, None, :], (b, h, w, num_classes))], axis=-1)


def class_rows(num_classes: int, n: int) -> jax.Array:
    """Labels [num_classes * (n // num_classes)]: n // num_classes of each class in class order, so that a
    sample grid of conditional samples has one row per class."""
    return jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), n // num_classes)
