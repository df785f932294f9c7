"""`python -m experiments.generate` on real `:smoke` runs: each output form, and its wiring."""

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxgan.evaluation import generation

REPO_ROOT = Path(__file__).resolve().parents[1]
PAD = 2  # make_grid's default padding.

pytestmark = pytest.mark.slow


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


def train_smoke(workdir: Path, *overrides: str) -> Path:
    result = run_module(
        "experiments.dcgan",
        "--config=experiments/configs/dcgan.py:smoke",
        f"--workdir={workdir}",
        "--config.eval_every=0",
        *overrides,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """Unconditional, no EMA."""
    return train_smoke(tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    """Class-conditional, with EMA weights that differ from the raw ones."""
    return train_smoke(
        tmp_path_factory.mktemp("conditional"),
        "--config.conditional=True",
        "--config.ema_decay=0.9",
    )


def generate(workdir, out, *flags: str) -> subprocess.CompletedProcess:
    return run_module("experiments.generate", f"--workdir={workdir}", f"--out={out}", *flags)


def load_npz(path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        assert archive.files == ["images"]
        return archive["images"]


def grid_tiles(path, count: int, columns: int, size: int = 28) -> np.ndarray:
    grid = np.asarray(Image.open(path))
    rows = -(-count // columns)
    assert grid.shape == (rows * (size + PAD) + PAD, columns * (size + PAD) + PAD)
    tiles = [
        grid[PAD + r * (size + PAD) :][:size, PAD + c * (size + PAD) :][:, :size]
        for r, c in (divmod(i, columns) for i in range(count))
    ]
    return np.stack(tiles)[..., None]


def expected_images(workdir, seed, count, *, labels=None, steps=0, use_ema=True):
    """The restored state's `sample()` on the latents the command documents, as uint8."""
    from jaxgan.checkpoint import load_run
    from jaxgan.core import sample
    from jaxgan.metrics import to_uint8

    _, state, _ = load_run(workdir)
    latents = generation.image_latents(
        seed, np.arange(count), latent_dim=state.latent_dim, steps=steps
    )
    return to_uint8(np.asarray(sample(state, latents, labels, use_ema=use_ema)))


def test_grid_folder_and_npz_hold_the_images_sample_gives(plain_run, tmp_path):
    grid, folder, npz = tmp_path / "grid.png", tmp_path / "pngs/", tmp_path / "samples.npz"
    for out in (grid, f"{folder}/", npz):
        result = generate(plain_run, out, "--num=10", "--seed=3")
        assert result.returncode == 0, result.stderr
        assert "checkpoint step 32" in result.stdout and "no EMA" in result.stdout
        assert str(out).rstrip("/") in result.stdout

    images = load_npz(npz)
    assert images.dtype == np.uint8 and images.shape == (10, 28, 28, 1)
    np.testing.assert_array_equal(images, expected_images(plain_run, 3, 10))
    np.testing.assert_array_equal(grid_tiles(grid, 10, columns=5), images)  # 2x5, no gap
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"{i:05d}.png" for i in range(10)]
    np.testing.assert_array_equal(
        np.stack([np.asarray(Image.open(f)) for f in files]), images[..., 0]
    )


def test_a_grid_of_8_is_2x4_with_no_empty_cell(plain_run, tmp_path):
    # Issue 20: --num=8 drew a 3x3 grid with an empty cell.
    result = generate(plain_run, tmp_path / "eight.png", "--num=8")
    assert result.returncode == 0, result.stderr
    assert "Wrote a 2x4 grid of 8 images" in result.stdout
    np.testing.assert_array_equal(
        grid_tiles(tmp_path / "eight.png", 8, columns=4), expected_images(plain_run, 0, 8)
    )


def test_same_seed_same_bytes_other_seed_other_images(plain_run, tmp_path):
    outputs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        outputs[name] = tmp_path / f"{name}.png"
        generation.run(str(plain_run), 16, seed, None, 0, str(outputs[name]))
    assert outputs["a"].read_bytes() == outputs["b"].read_bytes()
    assert not np.array_equal(
        np.asarray(Image.open(outputs["a"])), np.asarray(Image.open(outputs["c"]))
    )


def test_image_i_depends_on_neither_num_nor_batching(plain_run, tmp_path):
    from jaxgan.checkpoint import load_run

    generation.run(str(plain_run), 7, 0, None, 0, str(tmp_path / "seven.npz"))
    generation.run(str(plain_run), 3, 0, None, 0, str(tmp_path / "three.npz"))
    np.testing.assert_array_equal(
        load_npz(tmp_path / "three.npz"), load_npz(tmp_path / "seven.npz")[:3]
    )
    _, state, _ = load_run(plain_run)
    in_batches_of_3 = np.concatenate(list(generation.generate(state, 0, 7, batch_size=3)))
    # Batch size changes XLA's convolution schedule, so compare with one quantisation step.
    assert np.abs(in_batches_of_3.astype(int) - load_npz(tmp_path / "seven.npz")).max() <= 1


def test_conditional_round_robin_with_ema_weights(conditional_run, tmp_path):
    out = tmp_path / "samples.npz"
    result = generate(conditional_run, out, "--num=12")
    assert result.returncode == 0, result.stderr
    assert "EMA weights" in result.stdout and "round-robin over 10" in result.stdout
    images = load_npz(out)
    round_robin = np.arange(12) % 10
    np.testing.assert_array_equal(
        images, expected_images(conditional_run, 0, 12, labels=round_robin)
    )
    raw = expected_images(conditional_run, 0, 12, labels=round_robin, use_ema=False)
    other_classes = expected_images(conditional_run, 0, 12, labels=(round_robin + 1) % 10)
    assert not np.array_equal(images, raw)
    assert not np.array_equal(images, other_classes)


def test_label_selects_one_class(conditional_run, tmp_path):
    generation.run(str(conditional_run), 4, 0, 3, 0, str(tmp_path / "dress.npz"))
    np.testing.assert_array_equal(
        load_npz(tmp_path / "dress.npz"),
        expected_images(conditional_run, 0, 4, labels=np.full(4, 3)),
    )


def test_label_errors(plain_run, conditional_run, tmp_path):
    out_of_range = generate(conditional_run, tmp_path / "x.png", "--label=10")
    unconditional = generate(plain_run, tmp_path / "x.png", "--label=3")
    for result in (out_of_range, unconditional):
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "0=T-shirt/top" in out_of_range.stderr and "9=Ankle boot" in out_of_range.stderr
    assert "unconditional" in unconditional.stderr
    assert not (tmp_path / "x.png").exists()


def test_latent_walk_rows_go_from_latent_2r_to_2r_plus_1(plain_run, tmp_path):
    out = tmp_path / "walk.png"
    result = generate(plain_run, out, "--num=3", "--interpolate=5", "--seed=2")
    assert result.returncode == 0, result.stderr
    assert "3 latent walks of 5 steps (spherical)" in result.stdout
    tiles = grid_tiles(out, 15, columns=5)
    np.testing.assert_array_equal(tiles, expected_images(plain_run, 2, 15, steps=5))

    walk = np.asarray(generation.image_latents(2, np.arange(15), latent_dim=100, steps=5))
    plain = np.asarray(generation.image_latents(2, np.arange(6), latent_dim=100))
    np.testing.assert_allclose(walk[0::5], plain[0::2], atol=1e-5)
    np.testing.assert_allclose(walk[4::5], plain[1::2], atol=1e-5)
    assert not np.allclose(walk[2], (plain[0] + plain[1]) / 2, atol=1e-3)  # Not linear.


def test_slerp_on_hand_computed_points():
    start = jnp.array([[1.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    end = jnp.array([[0.0, 1.0], [0.0, 2.0], [3.0, 0.0]])
    fractions = jnp.array([0.5, 1 / 3, 0.5])
    expected = [
        [np.sqrt(0.5), np.sqrt(0.5)],  # 45 degrees on the unit circle.
        [2 * np.cos(np.pi / 6), 2 * np.sin(np.pi / 6)],  # 30 degrees, radius 2.
        [2.0, 0.0],  # Parallel: linear.
    ]
    np.testing.assert_allclose(generation.slerp(start, end, fractions), expected, atol=1e-6)


def test_no_checkpoint_is_one_line_exit_1(plain_run, tmp_path):
    workdir = tmp_path / "fresh"
    workdir.mkdir()
    (workdir / "config.json").write_text((plain_run / "config.json").read_text())
    for candidate in (workdir, tmp_path / "missing"):
        result = generate(candidate, tmp_path / "x.png")
        assert result.returncode == 1
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "no checkpoints" in generate(workdir, tmp_path / "x.png").stderr


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--out=samples.jpg",), ".npz"),
        (("--out=x.png", "--num=0"), "1 to 100000"),
        (("--out=x.png", "--num=100001"), "1 to 100000"),
        (("--out=x.png", "--num=20000", "--interpolate=8"), "160000 images"),
        (("--out=x.png", "--interpolate=1"), "2 to 256"),
        (("--out=x.png", "--nmu=3"), "nmu"),
    ],
)
def test_bad_flags_are_one_line_exit_2(plain_run, tmp_path, flags, needle):
    result = run_module("experiments.generate", f"--workdir={plain_run}", *flags)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_output_forms():
    assert generation.output_form("a/b.PNG") == "grid"
    assert generation.output_form("b.npz") == "npz"
    assert generation.output_form("new_folder/") == "folder"
    assert generation.output_form(str(REPO_ROOT / "tests")) == "folder"  # Exists, no slash.
    with pytest.raises(ValueError, match=r"\.png file.*folder.*\.npz file"):
        generation.output_form("samples.tiff")


def test_folder_with_images_is_refused(plain_run, tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    (folder / "mine.png").write_bytes(b"")
    with pytest.raises(ValueError, match="already holds 1 images"):
        generation.run(str(plain_run), 4, 0, None, 0, f"{folder}/")
    assert [f.name for f in folder.iterdir()] == ["mine.png"]


# --- populations (config.population = K: K GANs in one workdir) ---------------------------------


@pytest.fixture(scope="module")
def population_run(tmp_path_factory):
    """Two unconditional GANs trained as one population (member i from seed i)."""
    return train_smoke(
        tmp_path_factory.mktemp("population"),
        "--config.population=2",
        "--config.sample_every=0",
        "--config.num_train_examples=256",
    )


def stacked_state(workdir):
    """The population's stacked state, restored without `load_run`'s member selection."""
    import json

    import ml_collections

    from jaxgan.checkpoint import Checkpointer, signature
    from jaxgan.core import population
    from jaxgan.data import DatasetInfo

    config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
    checkpointer = Checkpointer(workdir / "checkpoints", 3)
    try:
        step = checkpointer.latest_step()
        info = DatasetInfo.from_dict(checkpointer.read_meta(step)["dataset_info"])
        size = population.size(config)
        template = jax.eval_shape(
            lambda keys: population.create(
                config,
                list(keys),
                [0.0] * size,
                image_shape=info.image_shape,
                num_classes=info.num_classes,
            ),
            jax.random.split(jax.random.key(0), size),
        )
        state, _ = checkpointer.restore(template, signature(config, info), step)
    finally:
        checkpointer.close()
    return state


def test_member_generates_that_members_images(population_run, tmp_path):
    from jaxgan.core import population, sample
    from jaxgan.metrics import to_uint8

    out = tmp_path / "member1.npz"
    result = generate(population_run, out, "--num=6", "--seed=2", "--member=1")
    assert result.returncode == 0, result.stderr
    assert f"of {population_run} member 1," in result.stdout
    images = load_npz(out)
    assert images.shape == (6, 28, 28, 1)

    stacked = stacked_state(population_run)
    assert population.count(stacked) == 2
    latents = generation.image_latents(2, np.arange(6), latent_dim=100)
    member_images = [
        to_uint8(np.asarray(sample(population.member(stacked, index), latents, None)))
        for index in range(2)
    ]
    np.testing.assert_array_equal(images, member_images[1])
    assert np.abs(member_images[0].astype(int) - member_images[1]).max() > 8, "members alike"

    generation.run(str(population_run), 6, 2, None, 0, str(tmp_path / "member0.npz"), member=0)
    np.testing.assert_array_equal(load_npz(tmp_path / "member0.npz"), member_images[0])


def test_member_errors_are_one_line_exit_1(population_run, tmp_path):
    missing = generate(population_run, tmp_path / "x.png")
    out_of_range = generate(population_run, tmp_path / "x.png", "--member=2")
    for result in (missing, out_of_range):
        assert result.returncode == 1
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "population of 2 GANs" in result.stderr and "member=0..1" in result.stderr
        assert "--member" in result.stderr
    assert "got None" in missing.stderr and "got 2" in out_of_range.stderr
    assert not (tmp_path / "x.png").exists()


def test_member_of_a_single_gan_is_refused(plain_run, tmp_path):
    result = generate(plain_run, tmp_path / "x.png", "--member=0")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "not a population" in result.stderr
    assert not (tmp_path / "x.png").exists()
