"""Reports of an evaluation: the `fid_result.txt` text, and a self-contained HTML page.

The HTML report holds the metrics, real and generated grids and a memorisation check, which
pairs generated images with their nearest training images in Inception pool3 space (Euclidean
distance): a generator that copies its training set shows pairs that are the same picture.
Every image is embedded as a base64 PNG, so the file can be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from jaxgan import fileio
from jaxgan.images import make_grid, to_uint8_images

PROTOCOL = (
    "FID protocol: uint8 images (generated [-1,1] floats as (x*127.5+128).clip(0,255) "
    "truncated to uint8); gray tiled to RGB; bilinear resize to 299x299 ({resize}); "
    "(x-128)/128; pool3 [2048] of the TF 2015-12-05 Inception-v3 (FID network of "
    "TTUR/pytorch-fid/NVIDIA), computed in {feature_dtype}; mean and covariance accumulated "
    "in float32 with Kahan summation and finished in float64; FID = |mu1-mu2|^2 + Tr(S1 + "
    "S2 - 2 sqrtm(S1 S2)), the trace of the square root as the sum of sqrt(eigenvalues of "
    "L^T S2 L), S1 = L L^T, in float64 (equal to scipy.linalg.sqrtm's to 1e-7 relative). "
    "KID: unbiased MMD^2, cubic polynomial kernel, {kid_subsets}. "
    "Precision/recall: Kynkaanniemi et al. 2019, k=3; density/coverage: Naeem et al. 2020, "
    "k=5; all on Inception pool3 features. D metrics: D as a real-vs-fake classifier, "
    "threshold 0.5 on sigmoid(logit), on the reference reals vs the generated images."
)

# Rows of the metrics table: (results key, label, format).
_METRIC_ROWS = (
    ("fid", "FID", "{:.4f}"),
    ("kid_mean", "KID (mean)", "{:.6f}"),
    ("kid_std", "KID (std over subsets)", "{:.6f}"),
    ("precision", "Precision (k=3)", "{:.4f}"),
    ("recall", "Recall (k=3)", "{:.4f}"),
    ("density", "Density (k=5)", "{:.4f}"),
    ("coverage", "Coverage (k=5)", "{:.4f}"),
    ("d_eval_accuracy", "Discriminator accuracy", "{:.4f}"),
    ("d_eval_precision", "Discriminator precision", "{:.4f}"),
    ("d_eval_recall", "Discriminator recall", "{:.4f}"),
    ("num_real", "N real", "{}"),
    ("num_fake", "N fake", "{}"),
    ("reference", "Reference", "{}"),
    ("step", "Checkpoint step", "{}"),
    ("latents", "Latents", "{}"),
    ("resize", "Resize", "{}"),
    ("feature_dtype", "Feature precision", "{}"),
    ("note", "Note", "{}"),
)
_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .8em;text-align:left}"
    "img{image-rendering:pixelated}figure{display:inline-block;margin:0 2em 1em 0}"
    ".pairs td{text-align:center}"
)


class Neighbours(NamedTuple):
    """Generated images with their nearest images of a search set, in feature space.

    Attributes:
      generated: [Q, H, W, C] generated images (uint8 or float in [-1, 1]).
      nearest: [Q, H, W, C] the nearest search-set image of each.
      distances: [Q] Euclidean pool3 distances.
      indices: [Q] positions of the nearest images in the search set.
      num_searched: size of the search set.
      search_set: what the search set is, e.g. 'fashion_mnist:train[:2000]'.
    """

    generated: np.ndarray
    nearest: np.ndarray
    distances: np.ndarray
    indices: np.ndarray
    num_searched: int
    search_set: str


def nearest_neighbours(
    query_features: np.ndarray, search_features: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Index and Euclidean distance of each query's nearest search feature.

    Args:
      query_features: [Q, D].
      search_features: [S, D], S >= 1.

    Returns:
      (indices int64 [Q], distances float64 [Q]); ties go to the lowest index.
    """
    query = np.asarray(query_features, np.float64)
    search = np.asarray(search_features, np.float64)
    if query.ndim != 2 or search.ndim != 2 or query.shape[1] != search.shape[1] or not len(search):
        raise ValueError(
            f"features have shapes {query.shape} and {search.shape}; allowed: [Q, D] and [S, D]"
            " with S >= 1"
        )
    squared = (
        np.einsum("qd,qd->q", query, query)[:, None]
        - 2 * query @ search.T
        + np.einsum("sd,sd->s", search, search)[None, :]
    )
    indices = np.argmin(squared, axis=1)
    distances = np.sqrt(np.maximum(squared[np.arange(len(query)), indices], 0))
    return indices, distances


def find_neighbours(
    generated_images: np.ndarray,
    generated_features: np.ndarray,
    search_images: np.ndarray,
    search_features: np.ndarray,
    search_set: str,
) -> Neighbours:
    """Pairs each generated image with its nearest search image (see `nearest_neighbours`)."""
    indices, distances = nearest_neighbours(generated_features, search_features)
    return Neighbours(
        generated=generated_images,
        nearest=np.asarray(search_images)[indices],
        distances=distances,
        indices=indices,
        num_searched=len(search_features),
        search_set=search_set,
    )


def png_data_uri(image: np.ndarray) -> str:
    """A uint8 [H, W] / [H, W, 1|3] image as a `data:image/png;base64,...` URI."""
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(image: np.ndarray, scale: int, alt: str) -> str:
    height, width = image.shape[:2]
    return (
        f'<img src="{png_data_uri(image)}" width="{width * scale}" height="{height * scale}" '
        f'alt="{html.escape(alt)}">'
    )


def _metrics_table(results: dict[str, Any]) -> str:
    rows = []
    for key, label, template in _METRIC_ROWS:
        if results.get(key) not in (None, ""):
            value = html.escape(template.format(results[key]))
            rows.append(f"<tr><th>{label}</th><td>{value}</td></tr>")
    return '<table class="metrics">' + "".join(rows) + "</table>"


def _neighbour_table(neighbours: Neighbours, scale: int) -> str:
    generated = to_uint8_images(neighbours.generated)
    nearest = to_uint8_images(neighbours.nearest)
    rows = ["<tr><th>#</th><th>generated</th><th>nearest</th><th>pool3 distance</th></tr>"]
    for position, distance in enumerate(neighbours.distances):
        index = int(neighbours.indices[position])
        rows.append(
            f"<tr><td>{position}</td><td>{_img(generated[position], scale, 'generated')}</td>"
            f"<td>{_img(nearest[position], scale, f'{neighbours.search_set} #{index}')}"
            f"<br>#{index}</td><td>{distance:.3f}</td></tr>"
        )
    return '<table class="pairs">' + "".join(rows) + "</table>"


def build_html_report(
    results: dict[str, Any],
    real_images: np.ndarray,
    fake_images: np.ndarray,
    neighbours: Neighbours | None = None,
    *,
    title: str = "jaxgan evaluation",
    num_grid_images: int = 64,
    scale: int = 3,
) -> str:
    """The report as one HTML string with every image embedded.

    Args:
      results: metrics and provenance, as from `jaxgan.evaluation.Evaluator.evaluate`.
      real_images: reference images, uint8 or float in [-1, 1], [N, H, W(, C)].
      fake_images: generated images, same forms.
      neighbours: the memorisation check, from `find_neighbours`; omitted if None.
      title: page title.
      num_grid_images: images per grid (the first ones of each set).
      scale: on-screen magnification of the pixels.
    """
    real_grid = make_grid(real_images[:num_grid_images])
    fake_grid = make_grid(fake_images[:num_grid_images])
    parts = [
        "<!DOCTYPE html>",
        f'<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Metrics</h2>",
        _metrics_table(results),
        "<h2>Real and generated images</h2>",
        f"<figure>{_img(real_grid, scale, 'real images')}<figcaption>real: "
        f"{html.escape(str(results.get('reference', '')))}</figcaption></figure>",
        f"<figure>{_img(fake_grid, scale, 'generated images')}<figcaption>generated"
        "</figcaption></figure>",
    ]
    if neighbours is not None:
        parts += [
            "<h2>Nearest neighbours (memorisation check)</h2>",
            f"<p>Each of the first {len(neighbours.distances)} generated images beside its "
            f"nearest image among {neighbours.num_searched} images of "
            f"{html.escape(neighbours.search_set)}, by Euclidean distance of Inception pool3 "
            "features. Pairs that are the same picture suggest the generator memorised its "
            "training data.</p>",
            _neighbour_table(neighbours, scale),
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html_report(
    path: str | Path,
    results: dict[str, Any],
    real_images: np.ndarray,
    fake_images: np.ndarray,
    neighbours: Neighbours | None = None,
    **options: Any,
) -> Path:
    """Writes `build_html_report(...)` to `path` atomically; returns the path."""
    return fileio.atomic_write_text(
        path, build_html_report(results, real_images, fake_images, neighbours, **options)
    )


def kid_subsets_text(results: dict[str, Any]) -> str:
    """'100 subsets of 1000', or for one subset of every image 'one subset: all 16 images'."""
    if results.get("kid_std") is None:
        return f"one subset: all {results['kid_subset_size']} images, so no spread over subsets"
    return f"{results['kid_num_subsets']} subsets of {results['kid_subset_size']}"


def _kid_line(results: dict[str, Any]) -> str:
    spread = "" if results.get("kid_std") is None else f" +- {results['kid_std']:.6f}"
    return f"KID: {results['kid_mean']:.6f}{spread} ({kid_subsets_text(results)})"


def format_results(results: dict[str, Any]) -> str:
    """The human-readable text of `fid_result.txt`: scores, N, reference, precision, protocol.

    KID's spread is shown only when its subsets differ (see `feature_metrics`).
    """
    lines = [
        f"FID: {results['fid']:.4f}",
        _kid_line(results),
        f"Precision (k=3): {results['precision']:.4f}",
        f"Recall (k=3): {results['recall']:.4f}",
        f"Density (k=5): {results['density']:.4f}",
        f"Coverage (k=5): {results['coverage']:.4f}",
    ]
    if "d_eval_accuracy" in results:
        lines += [
            f"Discriminator accuracy: {results['d_eval_accuracy']:.4f}",
            f"Discriminator precision: {results['d_eval_precision']:.4f}",
            f"Discriminator recall: {results['d_eval_recall']:.4f}",
        ]
    lines += [
        f"N real: {results['num_real']}",
        f"N fake: {results['num_fake']}",
        f"Reference: {results['reference']}",
        f"Feature precision: {results['feature_dtype']}",
    ]
    if "step" in results:
        lines.append(f"Checkpoint step: {results['step']}")
    if "latents" in results:
        lines.append(f"Latents: {results['latents']}")
    if results.get("note"):
        lines.append(f"Note: {results['note']}")
    lines.append(
        PROTOCOL.format(
            resize=results["resize"],
            feature_dtype=results["feature_dtype"],
            kid_subsets=kid_subsets_text(results),
        )
    )
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], path: str | Path) -> Path:
    """Writes `format_results(results)` to `path` (e.g. `fid_result.txt`), atomically."""
    return fileio.atomic_write_text(path, format_results(results))
