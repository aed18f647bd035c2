"""The conditional VAE: the label reaches encoder and decoder, step shapes, class-ordered samples."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import cvae_mnist
from genjax.data import to_model_batch
from genjax.models import cvae


def tiny_cvae_config(**overrides):
    config = cvae_mnist.get_config()
    config.update(
        dict(
            hidden_sizes=(16,),
            conv_channels=(4, 8),
            latent_dim=3,
            batch_size=8,
            num_steps=2,
            steps_per_call=2,
            eval_every=2,
            checkpoint_every=2,
            num_samples=25,
            source="embedded",
        )
    )
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def batch(mnist):
    return to_model_batch(mnist[0].take(np.arange(8)))


def test_the_label_is_an_input_of_encoder_and_decoder(batch):
    model = cvae.build_model(tiny_cvae_config(), (28, 28, 1), num_classes=10)
    other_labels = (batch["label"] + 1) % 10

    @jax.jit
    def forward(key):
        variables = model.init(key, batch["image"], key, batch["label"])
        z = jnp.zeros((8, 3))
        return (
            variables,
            model.apply(variables, batch["image"], key, batch["label"]),
            [model.apply(variables, batch["image"], labels, method="encode")[0] for labels in (batch["label"], other_labels)],
            [model.apply(variables, z, labels, method="mean_image") for labels in (batch["label"], other_labels)],
        )

    variables, (reconstruction, kl), means, images = forward(jax.random.PRNGKey(0))
    chex.assert_shape([reconstruction, kl], (8,))
    chex.assert_shape(images, (8, 28, 28, 1))
    assert variables["params"]["encoder"]["Dense_0"]["kernel"].shape == (784 + 10, 16)
    assert variables["params"]["decoder"]["Dense_0"]["kernel"].shape == (3 + 10, 16)
    assert not np.allclose(means[0], means[1]) and not np.allclose(images[0], images[1])


def test_the_conv_encoder_sees_the_label_as_channels(batch):
    model = cvae.build_model(tiny_cvae_config(architecture="conv"), (28, 28, 1), num_classes=10)
    key = jax.random.PRNGKey(0)
    variables = jax.eval_shape(model.init, key, batch["image"], key, batch["label"])  # shapes only: nothing compiles
    assert variables["params"]["encoder"]["Conv_0"]["kernel"].shape == (4, 4, 1 + 10, 4)
    assert variables["params"]["decoder"]["Dense_0"]["kernel"].shape == (3 + 10, 7 * 7 * 8)
    outputs = jax.eval_shape(model.apply, variables, batch["image"], key, batch["label"])
    chex.assert_shape(list(outputs), (8,))


def test_family_steps_eval_and_class_ordered_samples(mnist, batch):
    family = cvae.make_family(tiny_cvae_config(), mnist[0])
    assert family.conditional
    state = jax.jit(family.init)(jax.random.PRNGKey(0), batch)
    new_state, metrics = jax.jit(family.train_step)(state, batch, jax.random.PRNGKey(1))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
    assert set(metrics) == {"loss", "reconstruction", "kl"}
    per_example = jax.jit(family.eval_step)(new_state, batch, jax.random.PRNGKey(2))
    assert set(per_example) == {"neg_elbo", "reconstruction", "kl", "recon_mse"}
    chex.assert_shape(list(per_example.values()), (8,))
    np.testing.assert_allclose(per_example["neg_elbo"], per_example["reconstruction"] + per_example["kl"], rtol=1e-6)
    samples = jax.jit(family.sample, static_argnums=2)(new_state, jax.random.PRNGKey(3), 25)
    chex.assert_shape(samples, (20, 28, 28, 1))  # 2 per class, classes 0..9 in order
    assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0
    chex.assert_shape(jax.jit(family.reconstruct)(new_state, batch, jax.random.PRNGKey(4)), (8, 28, 28, 1))
