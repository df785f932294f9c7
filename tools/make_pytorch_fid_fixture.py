"""Writes tests/fixtures/pytorch_fid_pool3.npz: pool3 of pytorch-fid's own network.

The test of jaxgan's pytorch-fid weight-name map needs a reference that does not come from
that map. This tool builds pytorch-fid's FID Inception-v3 with pytorch-fid's own code
(`pytorch_fid.inception.InceptionV3`, block 3 = pool3), fills every state-dict tensor from
a numpy generator seeded by the tensor's name (`seeded_state_dict`, numpy only, so the test
recreates the same weights without torch), and records pool3 of a few fixed images.
Nothing is downloaded: pytorch-fid's weight download is replaced by the seeded state dict.

Torch is needed only here, in a separate virtualenv (about 5.5 GB), never by jaxgan or its
tests:

    python3 -m venv /tmp/ptfid_venv
    /tmp/ptfid_venv/bin/pip install torch==2.14.1 torchvision==0.29.1 pytorch-fid==0.3.0
    /tmp/ptfid_venv/bin/python tools/make_pytorch_fid_fixture.py [--output PATH]

The fixture holds, with no pickled objects:
    tensors: JSON string, [[name, shape], ...] of every state-dict entry, in order;
    images_seed: seed of the input images, see `fixture_images`;
    features: [NUM_IMAGES, 2048] float32 pool3 from pytorch-fid's forward pass;
    scheme, versions: provenance strings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib

import numpy as np

IMAGE_SIZE = 299
NUM_IMAGES = 2
IMAGES_SEED = 6726825
SCHEME = (
    "tensor `name` of shape S: rng = np.random.default_rng(int.from_bytes(sha256(name)[:8], "
    "'little')); conv.weight: rng.normal(0, 1, S) * sqrt(2 / fan_in); bn.weight, "
    "bn.running_var: rng.uniform(0.5, 1.5, S); bn.bias, bn.running_mean: rng.normal(0, 0.1, S); "
    "fc.*: rng.normal(0, 0.01, S); num_batches_tracked: 0 (int64); all others float32"
)
DEFAULT_OUTPUT = (
    pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "pytorch_fid_pool3.npz"
)


def seeded_tensor(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The values of state-dict entry `name`, as described by `SCHEME`."""
    if name.endswith("num_batches_tracked"):
        return np.zeros(shape, np.int64)
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    if name.startswith("fc."):
        values = rng.normal(0, 0.01, shape)
    elif name.endswith("conv.weight"):
        fan_in = int(np.prod(shape[1:]))
        values = rng.normal(0, 1, shape) * np.sqrt(2 / fan_in)
    elif name.endswith(("bn.weight", "bn.running_var")):
        values = rng.uniform(0.5, 1.5, shape)
    elif name.endswith(("bn.bias", "bn.running_mean")):
        values = rng.normal(0, 0.1, shape)
    else:
        raise ValueError(f"no seeding rule for state-dict entry {name!r}")
    return values.astype(np.float32)


def seeded_state_dict(tensors: list[tuple[str, tuple[int, ...]]]) -> dict[str, np.ndarray]:
    """name -> array for every (name, shape) in `tensors`."""
    return {name: seeded_tensor(name, tuple(shape)) for name, shape in tensors}


def fixture_images(seed: int = IMAGES_SEED) -> np.ndarray:
    """[NUM_IMAGES, 299, 299, 3] uint8: blocky colour noise, 13x13-pixel cells."""
    cells = np.random.default_rng(seed).integers(0, 256, (NUM_IMAGES, 23, 23, 3), dtype=np.uint8)
    return cells.repeat(13, axis=1).repeat(13, axis=2)


def main() -> None:
    import pytorch_fid
    import torch
    import torchvision
    from pytorch_fid import inception as pytorch_fid_inception

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    # pytorch-fid builds its network with its own code and then loads the downloaded state
    # dict. The download returns a marker instead, and loading the marker loads the seeded
    # state dict with the names and shapes of the module pytorch-fid built.
    download_marker = object()
    captured: dict[str, tuple[int, ...]] = {}
    original_load_state_dict = torch.nn.Module.load_state_dict

    def load_state_dict(module, state_dict, *load_args, **load_kwargs):
        if state_dict is download_marker:
            captured.update((name, tuple(t.shape)) for name, t in module.state_dict().items())
            seeded = seeded_state_dict(list(captured.items()))
            state_dict = {name: torch.from_numpy(array) for name, array in seeded.items()}
        return original_load_state_dict(module, state_dict, *load_args, **load_kwargs)

    torch.nn.Module.load_state_dict = load_state_dict
    pytorch_fid_inception.load_state_dict_from_url = lambda *unused, **unused_kw: download_marker
    network = pytorch_fid_inception.InceptionV3(
        [pytorch_fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
        resize_input=False,
        normalize_input=False,
    ).eval()
    assert captured, "pytorch-fid did not load its weights through load_state_dict_from_url"

    images = fixture_images()
    inputs = torch.from_numpy((images.astype(np.float32) - 128) / 128).permute(0, 3, 1, 2)
    with torch.no_grad():
        (pool3,) = network(inputs.contiguous())
    features = pool3[:, :, 0, 0].numpy().astype(np.float32)
    print(f"{len(captured)} tensors; pool3 {features.shape}, mean {features.mean():.4f}, "
          f"max {features.max():.4f}")  # fmt: skip

    versions = (
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"pytorch-fid {pytorch_fid.__version__}"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.output,
        tensors=np.array(json.dumps([[name, list(shape)] for name, shape in captured.items()])),
        images_seed=np.int64(IMAGES_SEED),
        features=features,
        scheme=np.array(SCHEME),
        versions=np.array(versions),
    )
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
