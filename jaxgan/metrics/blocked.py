"""Blocked passes over pool3 feature matrices on the accelerator: pure jitted JAX, float32.

The device halves of `jaxgan.metrics.device` (FID statistics, KID, precision/recall and
density/coverage). Each pass walks the rows in blocks of at most `BLOCK_ROWS` (zero-padded and
masked at the end), so a distance or kernel block holds `BLOCK_ROWS` x M values and the N x M
matrix is never held whole.

Every matrix product uses `Precision.HIGHEST`: the default lets GPUs use TF32 and TPUs
bfloat16 passes, which would cost FID and KID their accuracy.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# Rows per block; a distance block holds BLOCK_ROWS x M float32.
BLOCK_ROWS = 1024

_HIGHEST = jax.lax.Precision.HIGHEST


def _row_blocks(features: jax.Array, block_rows: int) -> tuple[jax.Array, jax.Array]:
    """[N, D] -> ([B, block_rows, D] zero-padded blocks, [B, block_rows] row-is-real mask)."""
    num_rows = features.shape[0]
    num_blocks = -(-num_rows // block_rows)
    padded = jnp.pad(features, ((0, num_blocks * block_rows - num_rows), (0, 0)))
    valid = jnp.arange(num_blocks * block_rows) < num_rows
    return padded.reshape(num_blocks, block_rows, -1), valid.reshape(num_blocks, block_rows)


def _kahan_add(
    total: jax.Array, compensation: jax.Array, value: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Kahan's compensated summation: (total + value, the rounding error to carry)."""
    corrected = value - compensation
    new_total = total + corrected
    return new_total, (new_total - total) - corrected


@functools.partial(jax.jit, static_argnames="block_rows")
def shifted_moments(
    features: jax.Array, block_rows: int = BLOCK_ROWS
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Sums and scatter of the features shifted by the first block's mean, in float32.

    Shifting by a mean estimate keeps the sums small, so the scatter does not cancel;
    the blocks' sums and scatter matrices are added with Kahan's compensated summation.
    mu = shift + s / N and sigma = (S - s s^T / N) / (N - 1) are then exact in float64.

    Args:
        features: [N, D] float32.
        block_rows: rows per block.

    Returns:
        (shift [D], s = sum_i (x_i - shift) [D], S = sum_i (x_i - shift)(x_i - shift)^T [D, D]).
    """
    block_rows = min(block_rows, features.shape[0])
    shift = features[:block_rows].mean(axis=0)
    blocks, valid = _row_blocks(features, block_rows)

    def add_block(carry, block):
        sums, sums_error, scatter, scatter_error = carry
        rows, rows_valid = block
        centred = jnp.where(rows_valid[:, None], rows - shift, 0)
        sums, sums_error = _kahan_add(sums, sums_error, centred.sum(axis=0))
        block_scatter = jnp.dot(centred.T, centred, precision=_HIGHEST)
        scatter, scatter_error = _kahan_add(scatter, scatter_error, block_scatter)
        return (sums, sums_error, scatter, scatter_error), None

    vector, matrix = jnp.zeros_like(shift), jnp.zeros((shift.size, shift.size), shift.dtype)
    (sums, _, scatter, _), _ = jax.lax.scan(
        add_block, (vector, vector, matrix, matrix), (blocks, valid)
    )
    return shift, sums, scatter


def _squared_distances(rows: jax.Array, columns: jax.Array, column_norms: jax.Array) -> jax.Array:
    """[R, D], [C, D], [C] -> [R, C] ||a||^2 + ||b||^2 - 2 a.b, clipped at 0 as in `manifold`."""
    row_norms = jnp.sum(rows * rows, axis=1)
    products = jnp.dot(rows, columns.T, precision=_HIGHEST)
    return jnp.maximum(row_norms[:, None] + column_norms[None, :] - 2 * products, 0)


@functools.partial(jax.jit, static_argnames=("ks", "block_rows"))
def kth_neighbour_radii(
    features: jax.Array, ks: tuple[int, ...], block_rows: int = BLOCK_ROWS
) -> jax.Array:
    """Distance from each point to its k-th nearest neighbour in the same set, for each k.

    As `manifold.real_radii`: each point's distance to itself is set to exactly 0 and is the
    0-th neighbour, so k = 1 is the nearest other point (a duplicate point counts).

    Args:
        features: [N, D] float32, N > max(ks).
        ks: neighbour ranks, each >= 1.
        block_rows: rows per distance block.

    Returns:
        [len(ks), N] float32 radii.
    """
    num_rows = features.shape[0]
    block_rows = min(block_rows, num_rows)
    norms = jnp.sum(features * features, axis=1)
    blocks, _ = _row_blocks(features, block_rows)

    def block_radii(index):
        squared = _squared_distances(blocks[index], features, norms)
        rows = index * block_rows + jnp.arange(block_rows)
        squared = jnp.where(rows[:, None] == jnp.arange(num_rows)[None, :], 0, squared)
        # top_k of the negated squares: the max(ks) + 1 smallest, ascending, self first.
        nearest, _ = jax.lax.top_k(-squared, max(ks) + 1)
        return nearest

    # The k-th values are picked after the loop: picking a single one inside it lets XLA's CPU
    # backend replace top_k by a full sort of each row, 5x slower at 10k x 10k.
    nearest = jax.lax.map(block_radii, jnp.arange(blocks.shape[0]))  # [B, block_rows, k + 1]
    nearest = nearest.reshape(-1, max(ks) + 1)[:num_rows]
    return jnp.sqrt(-nearest[:, jnp.asarray(ks)]).T


@functools.partial(jax.jit, static_argnames="block_rows")
def manifold_memberships(
    real: jax.Array,
    fake: jax.Array,
    real_pr_radii: jax.Array,
    real_dc_radii: jax.Array,
    fake_pr_radii: jax.Array,
    block_rows: int = BLOCK_ROWS,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Ball memberships behind precision, recall, density and coverage, in one real-fake pass.

    The comparisons of `manifold`: `<=` for precision/recall (Kynkäänniemi et al. 2019), a
    strict `<` for density/coverage (Naeem et al. 2020).

    Args:
        real: [N, D] float32 real features.
        fake: [M, D] float32 generated features.
        real_pr_radii: [N] real k-th neighbour radii for precision/recall.
        real_dc_radii: [N] real k-th neighbour radii for density/coverage.
        fake_pr_radii: [M] generated k-th neighbour radii for precision/recall.
        block_rows: real rows per distance block.

    Returns:
        (fake_in_real_manifold [M] bool, real_in_fake_manifold [N] bool,
         real_balls_holding_fake [M] int32 (density balls), real_covered [N] bool).
    """
    num_real = real.shape[0]
    block_rows = min(block_rows, num_real)
    fake_norms = jnp.sum(fake * fake, axis=1)
    blocks, valid = _row_blocks(real, block_rows)
    pr_radii, _ = _row_blocks(real_pr_radii[:, None], block_rows)
    dc_radii, _ = _row_blocks(real_dc_radii[:, None], block_rows)

    def add_block(carry, block):
        fake_in_real, ball_counts = carry
        rows, rows_valid, rows_pr_radii, rows_dc_radii = block
        distances = jnp.sqrt(_squared_distances(rows, fake, fake_norms))
        in_pr_balls = (distances <= rows_pr_radii) & rows_valid[:, None]
        in_dc_balls = (distances < rows_dc_radii) & rows_valid[:, None]
        real_in_fake = (distances <= fake_pr_radii[None, :]).any(axis=1)
        carry = (
            fake_in_real | in_pr_balls.any(axis=0),
            ball_counts + in_dc_balls.sum(axis=0, dtype=jnp.int32),
        )
        return carry, (real_in_fake, in_dc_balls.any(axis=1))

    start = (jnp.zeros(fake.shape[0], bool), jnp.zeros(fake.shape[0], jnp.int32))
    (fake_in_real, ball_counts), (real_in_fake, covered) = jax.lax.scan(
        add_block, start, (blocks, valid, pr_radii, dc_radii)
    )
    real_in_fake, covered = (per_row.reshape(-1)[:num_real] for per_row in (real_in_fake, covered))
    return fake_in_real, real_in_fake, ball_counts, covered


@functools.partial(jax.jit, static_argnames="block_rows")
def kid_estimates(
    real: jax.Array,
    fake: jax.Array,
    real_indices: jax.Array,
    fake_indices: jax.Array,
    block_rows: int = BLOCK_ROWS,
) -> jax.Array:
    """Unbiased MMD^2 of each subset pair under the cubic kernel, as `mmd.mmd2_unbiased`.

    With k(a, b) = (a . b / d + 1)^3 (Bińkowski et al. 2018),
    MMD^2_u = sum_ij [(k(x_i, x_j) + k(y_i, y_j)) 1[i != j] m / (m - 1) - 2 k(x_i, y_j)] / m^2.
    The bracket is formed entry by entry before the float32 sum, which then adds terms of
    either sign around the small result instead of three large sums that cancel.

    Args:
        real: [N, D] float32 real features.
        fake: [M, D] float32 generated features.
        real_indices: [S, m] int rows of `real` in each subset.
        fake_indices: [S, m] int rows of `fake` in each subset.
        block_rows: subset rows per kernel block.

    Returns:
        [S] float32 estimates.
    """
    size, dim = real_indices.shape[1], real.shape[1]
    block_rows = min(block_rows, size)

    def kernel(rows, columns):
        return (jnp.dot(rows, columns.T, precision=_HIGHEST) / dim + 1) ** 3

    def subset_estimate(indices):
        real_subset, fake_subset = real[indices[0]], fake[indices[1]]
        real_blocks, valid = _row_blocks(real_subset, block_rows)
        fake_blocks, _ = _row_blocks(fake_subset, block_rows)

        def block_sum(block):
            real_rows, fake_rows, rows_valid, first_row = block
            rows = first_row + jnp.arange(block_rows)
            off_diagonal = rows[:, None] != jnp.arange(size)[None, :]
            within = kernel(real_rows, real_subset) + kernel(fake_rows, fake_subset)
            terms = jnp.where(off_diagonal, within, 0) * (size / (size - 1))
            terms = terms - 2 * kernel(real_rows, fake_subset)
            return jnp.where(rows_valid[:, None], terms, 0).sum()

        first_rows = jnp.arange(real_blocks.shape[0]) * block_rows
        block_sums = jax.lax.map(block_sum, (real_blocks, fake_blocks, valid, first_rows))
        return block_sums.sum() / size**2

    return jax.lax.map(subset_estimate, jnp.stack([real_indices, fake_indices], axis=1))
