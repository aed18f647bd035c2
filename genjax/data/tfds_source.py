"""Image datasets from TensorFlow Datasets, read with `tfds.data_source` (random access, no TensorFlow).

Reading needs the dataset prepared in the `array_record` format under `data_dir` (default: tfds's own,
~/tensorflow_datasets). Preparing downloads it and needs TensorFlow, once, on a machine with network:

    pip install -e ".[prepare]" && python -m genjax.data.prepare mnist
"""

import contextlib
import importlib.util
import logging
import tempfile

import numpy as np

from genjax.data.dataset import Dataset
from genjax.errors import UserError

# name -> (number of classes, 0 when unlabelled; whether pixels are binary 0/1 and become 0/255)
TFDS_DATASETS = {
    "mnist": (10, False),
    "fashion_mnist": (10, False),
    "binarized_mnist": (0, True),
    "cifar10": (10, False),
}

PREPARE_HINT = 'prepare it once on a machine with network: pip install -e ".[prepare]" && python -m genjax.data.prepare {name}'


def can_prepare() -> bool:
    """Preparing (downloading) a tfds dataset needs TensorFlow; training never does."""
    return importlib.util.find_spec("tensorflow") is not None


@contextlib.contextmanager
def _scratch_tempdir():
    """Point `tempfile`'s default directory at a scratch directory removed on exit. Building a tfds builder
    for a dataset that is not prepared calls `DatasetInfo.initialize_from_bucket`, which makes a
    `tempfile.mkdtemp("tfds")` directory and never removes it: one empty /tmp/tmp*tfds per load, thousands
    after a test suite's runs. The setting is process-wide, so it is held only while tfds builds its builder."""
    previous = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="genjax-tfds-") as scratch:
        tempfile.tempdir = scratch
        try:
            yield
        finally:
            tempfile.tempdir = previous


def prepare(name: str, data_dir: str | None = None) -> None:
    """Download `name` and write it as array_record under `data_dir`; needs network and TensorFlow."""
    import tensorflow_datasets as tfds

    if not can_prepare():
        raise UserError(f"preparing tfds dataset '{name}' needs TensorFlow: {PREPARE_HINT.format(name=name)}")
    with _scratch_tempdir():
        builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    try:
        builder.download_and_prepare()
    except Exception as error:  # network and download failures come in many types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"could not download tfds dataset '{name}' ({first_line}); {PREPARE_HINT.format(name=name)}") from error


def open_source(name: str, split: str, data_dir: str | None):
    """The prepared tfds data source, or None when it is not prepared (in array_record) under data_dir."""
    import tensorflow_datasets as tfds

    try:
        with _scratch_tempdir():
            return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise UserError(f"tfds has no dataset '{name}'") from error
    except ValueError as error:
        if "split" in str(error).lower():
            raise UserError(f"tfds dataset '{name}' has no split '{split}'") from error
        logging.debug("tfds %s/%s unavailable: %s", name, split, error)
        return None
    except Exception as error:  # not prepared, or prepared as tfrecord: tfds raises several types here
        logging.debug("tfds %s/%s unavailable: %s", name, split, error)
        return None


def load_tfds(name: str, split: str, data_dir: str | None = None, download: bool = False) -> Dataset | None:
    """Read a whole split into memory; None when it is not prepared and `download` is off or impossible."""
    if name not in TFDS_DATASETS:
        raise UserError(f"unknown tfds dataset '{name}': genjax reads {', '.join(sorted(TFDS_DATASETS))}")
    source = open_source(name, split, data_dir)
    if source is None and download and can_prepare():
        prepare(name, data_dir)
        source = open_source(name, split, data_dir)
    if source is None:
        return None
    num_classes, binary = TFDS_DATASETS[name]
    records = [source[i] for i in range(len(source))]
    images = np.stack([r["image"] for r in records]).astype(np.uint8)
    if binary:
        images = np.where(images > 0, 255, 0).astype(np.uint8)
    labels = np.array([r.get("label", 0) for r in records], dtype=np.int32)
    return Dataset(name, split, "tfds", {"image": images, "label": labels}, num_classes=max(num_classes, 1))
