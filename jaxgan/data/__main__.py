"""`python -m jaxgan.data [DATA_DIR]`: prepares and caches FashionMNIST, or says how.

The first load prepares the dataset with tfds (which needs TensorFlow) and caches a
uint8 copy in `$JAXGAN_CACHE_DIR` (default `~/.cache/jaxgan`); training then never
imports TensorFlow. DATA_DIR is a folder holding the four official IDX `.gz` files;
without it, Debian's `dataset-fashion-mnist` package is used.
"""

from __future__ import annotations

import argparse
import logging
import sys

from jaxgan.data import DataUnavailableError, default_cache_dir, fashion_mnist


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxgan.data",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "data_dir",
        nargs="?",
        default=None,
        help="folder with train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (default: Debian's files)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        for split in fashion_mnist.SPLITS:
            images, labels = fashion_mnist.load_fashion_mnist(split, data_dir=args.data_dir)
            print(
                f"fashion_mnist {split}: images {images.shape} {images.dtype}, labels "
                f"{labels.shape}; cached in {default_cache_dir()}"
            )
    except (DataUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
