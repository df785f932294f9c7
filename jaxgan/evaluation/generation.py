"""A state's networks in batches: the evaluation's images and D's logits, and what
`experiments.generate` does (images from a run's checkpoint, as a grid, PNGs or .npz).

The evaluation's image i of a key has the latent `normal(fold_in(key, i))`
(`generate_images`); the training loop's key for the evaluation after epoch E is
`evaluation_key(seed, E)`, so `experiments.evaluate` can score a checkpoint with the very
images the run scored.

Image `i` of seed `s` has the latent `normal(fold_in(key(s), i))` (`image_latents`), so an
image does not depend on `--num` or on the batch it was generated in: the first 64 images
of `--num=1000` are those of `--num=64`. A latent walk (`--interpolate=S`) has `--num`
rows of S images; row `r` goes from latent `2r` to latent `2r + 1` of the seed by
spherical interpolation (Shoemake 1985; White 2016, "Sampling Generative Networks"),
which keeps the walk at the norm Gaussian latents have, where linear interpolation would
pass through the low-norm centre.

Images are quantised once, with the FID protocol's `jaxgan.metrics.to_uint8`, so the
grid, the PNG files and the .npz hold the same pixels and `experiments.evaluate` scores
an .npz or a folder exactly as it scores the generator's float output.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

# The training loop's sub-key of the seed for evaluation (jaxgan.training.trainer: INIT,
# TRAIN, SAMPLES, EVAL = range(4)).
EVAL_STREAM = 3
MAX_NUM = 100_000  # Images per command (a walk counts rows x steps); 100k uint8 28x28 = 78 MB.
MAX_STEPS = 256
MAX_SEED = 2**31 - 1
BATCH_SIZE = 256
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # What `experiments.evaluate` reads from a folder.
OUT_FORMS = (
    "a .png file (one grid), a folder ending in '/' or already existing (one PNG per "
    "image: 00000.png, 00001.png, ...), or an .npz file (key 'images', uint8 [N, H, W, C])"
)


def evaluation_key(seed: int, epoch: int) -> jax.Array:
    """The latent key of the training loop's evaluation after `epoch` epochs of seed `seed`.

    `fold_in(fold_in(key(seed), EVAL_STREAM), epoch)`, `epoch` counting completed epochs; a
    population's member i has its own seed, `config.seed + i`. Scoring a checkpoint with
    this key (and the run's N) reproduces the FID the run logged for it.
    """
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), EVAL_STREAM), epoch)


def pad_rows(batch: np.ndarray, size: int) -> np.ndarray:
    """`batch` with its last row repeated up to `size` rows, so that jitted calls compile once."""
    if len(batch) == size:
        return batch
    return np.concatenate([batch, np.repeat(batch[-1:], size - len(batch), axis=0)])


@functools.partial(jax.jit, static_argnames=("batch_size", "latent_dim"))
def key_latents(key: jax.Array, start: int, *, batch_size: int, latent_dim: int) -> jax.Array:
    """The latents [batch_size, latent_dim] of images start, start + 1, ... of `key`."""
    indices = start + jnp.arange(batch_size, dtype=jnp.uint32)
    return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (latent_dim,)))(indices)


def generate_images(
    state, key: jax.Array, num: int, batch_size: int, labels: np.ndarray | None = None, *,
    should_stop=None,
) -> np.ndarray:  # fmt: skip
    """`num` images from `state`'s generator in inference mode (`jaxgan.core.sample`).

    Image i comes from the latent `jax.random.normal(jax.random.fold_in(key, i),
    (state.latent_dim,))`, so the images do not depend on `batch_size`.

    Args:
      state: the trained state.
      key: PRNG key of the latents.
      num: number of images.
      batch_size: images per generator call.
      labels: int [num] classes for a conditional generator; None for an unconditional one.
      should_stop: called before each batch; True raises `EvaluationInterrupted`.

    Returns:
      float32 [num, H, W, C] in [-1, 1], on the host.
    """
    from jaxgan.core import sample
    from jaxgan.metrics.features import check_stop

    batches = []
    batch_size = min(batch_size, num)
    for start in range(0, num, batch_size):
        check_stop(should_stop, f"generation (image {start} of {num})")
        latents = key_latents(key, start, batch_size=batch_size, latent_dim=state.latent_dim)
        batch_labels = None
        if labels is not None:
            batch_labels = jnp.asarray(pad_rows(labels[start : start + batch_size], batch_size))
        batches.append(np.asarray(sample(state, latents, batch_labels)))
    return np.concatenate(batches)[:num]


def discriminator_logits(
    state, images: np.ndarray, batch_size: int, labels: np.ndarray | None = None
) -> np.ndarray:
    """D's logits [N] in inference mode, for uint8 [N, H, W(, C)] or float [-1, 1] images."""
    from jaxgan.core import discriminate, images_to_float

    if images.ndim == 3:
        images = images[..., None]
    logits = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        count = len(batch)
        batch = jnp.asarray(pad_rows(batch, batch_size))
        if batch.dtype == jnp.uint8:
            batch = images_to_float(batch)
        batch_labels = None
        if labels is not None:
            batch_labels = jnp.asarray(pad_rows(labels[start : start + batch_size], batch_size))
        logits.append(np.asarray(discriminate(state, batch, batch_labels))[:count])
    return np.concatenate(logits)


def output_form(out: str) -> str:
    """'grid', 'folder' or 'npz' for an `--out` value; ValueError naming the three forms."""
    suffix = Path(out).suffix.lower()
    if suffix == ".png":
        return "grid"
    if suffix == ".npz":
        return "npz"
    if out.endswith(("/", os.sep)) or Path(out).is_dir():
        return "folder"
    raise ValueError(f"--out={out!r} is not a supported output; allowed: {OUT_FORMS}")


def check_flags(num: int, seed: int, interpolate: int, out: str) -> None:
    """Validates the flags that need no checkpoint; raises ValueError saying what is allowed."""
    output_form(out)
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"--seed={seed} is out of range; allowed: 0 to {MAX_SEED}")
    if interpolate and not 2 <= interpolate <= MAX_STEPS:
        raise ValueError(
            f"--interpolate={interpolate} is out of range; allowed: 0 (no walk) or 2 to "
            f"{MAX_STEPS} steps"
        )
    total = num * max(interpolate, 1)
    if not 1 <= total <= MAX_NUM:
        what = f"--num={num}"
        if interpolate:
            what += f" x --interpolate={interpolate} = {total} images"
        raise ValueError(
            f"{what} is out of range; allowed: 1 to {MAX_NUM} images per command (use "
            "another --seed for more)"
        )


def slerp(start: jax.Array, end: jax.Array, fractions: jax.Array) -> jax.Array:
    """Spherical interpolation between latents [B, D] at fractions [B] in [0, 1] -> [B, D].

    Falls back to linear interpolation where the two latents are (anti)parallel.
    """
    unit_start = start / jnp.linalg.norm(start, axis=-1, keepdims=True)
    unit_end = end / jnp.linalg.norm(end, axis=-1, keepdims=True)
    angle = jnp.arccos(jnp.clip(jnp.sum(unit_start * unit_end, axis=-1), -1.0, 1.0))
    sin_angle = jnp.sin(angle)
    parallel = sin_angle < 1e-6
    safe_sin = jnp.where(parallel, 1.0, sin_angle)
    start_weight = jnp.where(
        parallel, 1.0 - fractions, jnp.sin((1.0 - fractions) * angle) / safe_sin
    )
    end_weight = jnp.where(parallel, fractions, jnp.sin(fractions * angle) / safe_sin)
    return start_weight[:, None] * start + end_weight[:, None] * end


@functools.partial(jax.jit, static_argnames=("latent_dim", "steps"))
def image_latents(seed: int, indices: jax.Array, *, latent_dim: int, steps: int = 0) -> jax.Array:
    """The latents [B, latent_dim] of images `indices` (int [B]) of `seed`.

    Without `steps`, latent i is `normal(fold_in(key(seed), i), [latent_dim])`. With
    `steps` = S (a latent walk), image i is step `i % S` of row `i // S`, which goes from
    latent `2 * row` to latent `2 * row + 1` by `slerp`.
    """
    base_key = jax.random.key(seed)

    def latent(index):
        return jax.random.normal(jax.random.fold_in(base_key, index), (latent_dim,))

    indices = jnp.asarray(indices, jnp.uint32)
    if not steps:
        return jax.vmap(latent)(indices)
    rows, positions = indices // steps, indices % steps
    fractions = positions.astype(jnp.float32) / (steps - 1)
    return slerp(jax.vmap(latent)(2 * rows), jax.vmap(latent)(2 * rows + 1), fractions)


def image_labels(
    indices: np.ndarray, num_classes: int, label: int | None, steps: int = 0
) -> np.ndarray | None:
    """Classes int32 [B] of images `indices`: `label`, else round-robin (per walk row)."""
    if not num_classes:
        return None
    if label is not None:
        return np.full(len(indices), label, np.int32)
    return ((np.asarray(indices) // max(steps, 1)) % num_classes).astype(np.int32)


def check_label(label: int | None, num_classes: int, class_names: list[str]) -> None:
    """ValueError for `--label` on an unconditional model or outside [0, num_classes)."""
    if label is None:
        return
    if not num_classes:
        raise ValueError(
            f"--label={label} was given, but this model is unconditional; leave --label out"
        )
    if not 0 <= label < num_classes:
        names = ", ".join(f"{index}={name}" for index, name in enumerate(class_names))
        raise ValueError(f"--label={label} is out of range; allowed: {names}")


def generate(
    state,
    seed: int,
    count: int,
    *,
    label: int | None = None,
    steps: int = 0,
    batch_size: int = BATCH_SIZE,
) -> Iterator[np.ndarray]:
    """Images 0..count-1 of `seed` as uint8 [b, H, W, C] batches, in order.

    Each batch is padded to one size, so the generator compiles once.
    """
    from jaxgan.core import sample
    from jaxgan.metrics import to_uint8

    size = min(batch_size, count)
    for start in range(0, count, size):
        indices = np.arange(start, start + size)
        latents = image_latents(seed, indices, latent_dim=state.latent_dim, steps=steps)
        labels = image_labels(indices, state.num_classes, label, steps)
        images = sample(state, latents, labels)
        yield to_uint8(np.asarray(images[: min(size, count - start)]))


def run(
    workdir: str,
    num: int,
    seed: int,
    label: int | None,
    interpolate: int,
    out: str,
    *,
    member: int | None = None,
) -> str:
    """Generates and writes the images; returns what was written, as one line.

    `member` picks the GAN of a population's workdir (0 to K-1); leave it None for a
    single GAN's workdir.

    Raises:
      FileNotFoundError: `workdir` is not a training workdir.
      ValueError: no usable checkpoint, a bad `label` or `member`, or a folder that
        already holds images (new PNGs would mix with them when the folder is evaluated).
    """
    from jaxgan import images as images_lib
    from jaxgan.checkpoint import load_run
    from jaxgan.fileio import atomic_savez

    form = output_form(out)
    out_path = Path(out)
    if form == "folder" and out_path.is_dir():
        existing = [p for p in out_path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if existing:
            raise ValueError(
                f"{out_path} already holds {len(existing)} images; the new PNGs would mix with "
                "them (experiments.evaluate reads every image in a folder): choose a new folder"
            )
    _, state, meta = load_run(workdir, member=member)
    info = meta["dataset_info"]
    check_label(label, state.num_classes, info["class_names"])
    count = num * max(interpolate, 1)
    batches = generate(state, seed, count, label=label, steps=interpolate)
    if form == "folder":
        written = 0
        for batch in batches:
            for image in batch:
                images_lib.save_png(out_path / f"{written:05d}.png", image)
                written += 1
        what = f"{count} PNG files 00000.png..{count - 1:05d}.png to {out_path}/"
    else:
        images = np.concatenate(list(batches))
        if form == "npz":
            atomic_savez(out_path, images=images)
            what = f"images uint8 {list(images.shape)} to {out_path}"
        else:
            columns = interpolate or (
                state.num_classes if state.num_classes and label is None else None
            )
            images_lib.save_png(out_path, images_lib.make_grid(images, columns=columns))
            columns = columns or images_lib.grid_columns(count)
            rows = math.ceil(count / columns)
            what = f"a {rows}x{columns} grid of {count} images to {out_path}"
    if interpolate:
        what += f"; {num} latent walks of {interpolate} steps (spherical), one per row"
    if state.num_classes and label is not None:
        what += f"; class {label} ({info['class_names'][label]})"
    elif state.num_classes:
        what += f"; classes round-robin over {state.num_classes}"
    weights = "EMA weights" if state.g_ema else "generator weights (the run keeps no EMA)"
    of_member = "" if member is None else f" member {member}"
    return (
        f"Wrote {what}; seed {seed}; checkpoint step {int(state.step)} of {workdir}{of_member}, "
        f"{weights}"
    )


def parse_flags(argv: list[str], doc: str) -> list[str]:
    """absl's parsing with `--help` on stdout and one-line errors (exit 2)."""
    if any(arg in ("-h", "--help", "--helpshort", "--helpfull") for arg in argv[1:]):
        # main_module_help() starts with the module's path: drop that line.
        flag_help = flags.FLAGS.main_module_help().strip().split("\n", 1)[-1]
        print(f"{doc.strip()}\n\nFlags:\n{flag_help}")
        sys.exit(0)
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as error:
        print(f"error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    if len(rest) > 1:
        print(f"error: unexpected arguments: {' '.join(rest[1:])}", file=sys.stderr)
        sys.exit(2)
    return rest
