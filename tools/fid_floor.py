"""Writes the first N images of FashionMNIST's train and test splits as .npz files.

The FID between them is the floor a generator can be compared with at the same N:

    python tools/fid_floor.py 10000 /tmp/floor
    python -m experiments.evaluate --real=/tmp/floor/test.npz --fake=/tmp/floor/train.npz \
        --output=/tmp/floor/fid_floor.txt
"""

import sys
from pathlib import Path

import numpy as np

from jaxgan.data.fashion_mnist import load_fashion_mnist


def main() -> None:
    if len(sys.argv) != 3 or not sys.argv[1].isdigit() or int(sys.argv[1]) < 2:
        raise SystemExit("usage: python tools/fid_floor.py N OUTPUT_DIR   (N >= 2)")
    num, output = int(sys.argv[1]), Path(sys.argv[2])
    output.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        images, _ = load_fashion_mnist(split)
        np.savez(output / f"{split}.npz", images=images[:num])
        print(f"{output / f'{split}.npz'}: {split}[:{num}]")


if __name__ == "__main__":
    main()
