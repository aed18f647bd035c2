"""Download and prepare tfds datasets for genjax (online, needs TensorFlow: pip install -e ".[prepare]").

python -m genjax.data.prepare mnist fashion_mnist --data_dir ~/tensorflow_datasets
"""

import argparse
import sys

from genjax.data.tfds_source import TFDS_DATASETS, prepare
from genjax.errors import UserError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", choices=sorted(TFDS_DATASETS))
    parser.add_argument("--data_dir", default=None, help="tfds data directory (default: tfds's own)")
    args = parser.parse_args(argv)
    try:
        for name in args.names:
            prepare(name, args.data_dir)
            print(f"prepared {name}")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
