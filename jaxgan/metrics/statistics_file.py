"""FID statistics on disk: an .npz of `mu`, `sigma` and `num_images`, written atomically and
read back with every field checked (a reference set's statistics, computed once)."""

from __future__ import annotations

import numbers
import os
import pickle
import zipfile
from typing import Any

import numpy as np

from jaxgan import fileio
from jaxgan.metrics.frechet import FIDStatistics


def save_statistics(path: str | os.PathLike, mu: Any, sigma: Any, num_images: int) -> None:
    """Writes FID statistics to an .npz file atomically (`jaxgan.fileio.atomic_savez`).

    Args:
        path: destination file; missing parent folders are created.
        mu: [D] feature mean.
        sigma: [D, D] feature covariance.
        num_images: number of images the statistics come from (>= 2).

    Raises:
        ValueError: on shapes other than [D] and [D, D], non-finite values, or num_images < 2.
    """
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"mu {mu.shape} and sigma {sigma.shape} must be [D] and [D, D]")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError("mu and sigma must be finite")
    if isinstance(num_images, bool) or not isinstance(num_images, numbers.Integral):
        raise ValueError(f"num_images must be an integer, got {num_images!r}")
    if num_images < 2:
        raise ValueError(f"num_images must be at least 2, got {num_images}")
    fileio.atomic_savez(path, mu=mu, sigma=sigma, num_images=np.int64(num_images))


def load_statistics(path: str | os.PathLike) -> FIDStatistics:
    """Reads FID statistics written by `save_statistics`.

    Args:
        path: an .npz file with arrays `mu` [D], `sigma` [D, D] and `num_images` (scalar).

    Returns:
        FIDStatistics with float64 arrays.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the file is not a readable .npz, lacks a key, or has wrong shapes.
    """
    try:
        contents = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as error:
        raise ValueError(
            f"{path} is not a readable .npz file of FID statistics: {error}"
        ) from error
    if not isinstance(contents, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not an .npz file of FID statistics")
    with contents:
        missing = {"mu", "sigma", "num_images"} - set(contents.files)
        if missing:
            raise ValueError(
                f"{path} lacks {sorted(missing)}; FID statistics need mu, sigma, num_images"
            )
        try:
            mu, sigma, num_images = (contents[key] for key in ("mu", "sigma", "num_images"))
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path} has an unreadable array: {error}") from error
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path} holds mu {mu.shape} and sigma {sigma.shape}; need [D], [D, D]")
    if not (np.issubdtype(mu.dtype, np.floating) and np.issubdtype(sigma.dtype, np.floating)):
        raise ValueError(f"{path} holds mu {mu.dtype} and sigma {sigma.dtype}; need floats")
    if num_images.shape != () or not np.issubdtype(num_images.dtype, np.integer):
        raise ValueError(f"{path} holds num_images {num_images!r}; need an integer scalar")
    mu, sigma = mu.astype(np.float64), sigma.astype(np.float64)
    return FIDStatistics(mu, sigma, int(num_images))
