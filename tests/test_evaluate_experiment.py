"""`experiments.evaluate`'s logic (experiments/offline.py), with a stand-in for Inception."""

import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from jaxgan.checkpoint import Checkpointer, signature
from jaxgan.core import create_state
from jaxgan.data.fashion_mnist import INFO as FASHION_MNIST_INFO
from jaxgan.evaluation import offline
from jaxgan.metrics import SmallSampleWarning
from tests.helpers.serving import write_population_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]


@jax.jit
def pixel_features(preprocessed: jax.Array) -> jax.Array:
    """A cheap stand-in for Inception: 16 pooled pixel values, [B, 16]."""
    pooled = preprocessed[:, ::75, ::75, 0]
    return pooled.reshape(preprocessed.shape[0], -1)


def fake_splits(monkeypatch) -> None:
    """40 random images per split instead of FashionMNIST's."""
    rng = np.random.default_rng(0)
    splits = {
        split: (rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 40))
        for split in ("train", "test")
    }
    monkeypatch.setattr(
        offline, "load_split", lambda config, split: (*splits[split], f"fashion_mnist:{split}")
    )


@pytest.fixture
def workdir(tmp_path, tiny_config, monkeypatch):
    """A training workdir with a step-0 checkpoint; its dataset is 40 random images."""
    config = tiny_config(
        "dcgan", fid_num_samples=12, fid_batch_size=6, kid_subset_size=6, kid_num_subsets=2
    )
    state = create_state(config, jax.random.key(0), image_shape=(28, 28, 1), num_classes=10)
    checkpointer = Checkpointer(tmp_path / "checkpoints", 3)
    checkpointer.save(
        state,
        {
            "epoch": 0,
            "signature": signature(config, FASHION_MNIST_INFO),
            "dataset_info": FASHION_MNIST_INFO.to_dict(),
        },
    )
    checkpointer.close()
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    fake_splits(monkeypatch)
    return tmp_path


def test_workdir_evaluation_never_overwrites_the_runs_fid_result(workdir):
    own_result = workdir / "fid_result.txt"
    own_result.write_text("FID: 1.0000\nthe training run's own result\n")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        text = offline.run(workdir=workdir, num_samples=10, batch_size=5, feature_fn=pixel_features)

    assert own_result.read_text() == "FID: 1.0000\nthe training run's own result\n"
    by_hand = workdir / "fid_result_step0_n10.txt"
    assert by_hand.read_text() == text
    assert "N fake: 10" in text and "Reference: fashion_mnist:test[:10]" in text
    with pytest.raises(ValueError, match="own result file"):
        offline.run(workdir=workdir, output=own_result, feature_fn=pixel_features)


def test_workdir_small_n_warns_once_and_names_num_samples(workdir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        offline.run(workdir=workdir, batch_size=6, feature_fn=pixel_features)
    assert [warning.category for warning in caught] == [SmallSampleWarning]
    assert "--num_samples" in str(caught[0].message)


def test_workdir_html_report_pairs_samples_with_training_images(workdir, tmp_path):
    html_path = tmp_path / "report.html"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        offline.run(
            workdir=workdir,
            batch_size=6,
            html_report=html_path,
            report_train_images=25,
            feature_fn=pixel_features,
        )
    page = html_path.read_text()
    assert "among 25 images of fashion_mnist:train[:25]" in page
    # Two grids and 12 (generated, nearest) pairs: N=12 is below the 16 shown at most.
    assert page.count("data:image/png;base64,") == 2 + 2 * 12
    assert "Feature precision</th><td>float32" in page


def test_html_report_searches_as_many_training_images_as_n_by_default(workdir, tmp_path):
    # Issue 20: --report always took the Inception features of 2000 training images.
    html_path = tmp_path / "report.html"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        offline.run(workdir=workdir, html_report=html_path, feature_fn=pixel_features)
    assert "among 12 images of fashion_mnist:train[:12]" in html_path.read_text()


def test_evaluate_reproduces_the_fid_the_training_run_logged(tmp_path, tiny_config, monkeypatch):
    # Issue 20: at the same checkpoint and N, evaluate gave 395.6 where training logged 403.35.
    from jaxgan.evaluation import Evaluator
    from jaxgan.training import loop

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for index in range(24):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(data / f"{index}.png")
    config = tiny_config(
        "mlp", dataset=f"folder:{data}", num_epochs=2, batch_size=8, eval_every=1, seed=3,
        fid_num_samples=12, fid_batch_size=0, kid_subset_size=6, kid_num_subsets=2,
        sample_every=0, progress=False,
    )  # fmt: skip

    def evaluator_factory(config, test_set):
        return Evaluator.from_dataset(config, test_set, feature_fn=pixel_features)

    workdir = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        loop.train_and_evaluate(config, workdir, evaluator_factory=evaluator_factory)
    logged = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[-1])
    scored = []
    monkeypatch.setattr(
        offline.report, "write_results", lambda results, path: scored.append(results)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        text = offline.run(workdir=workdir, feature_fn=pixel_features)
        offline.run(workdir=workdir, feature_fn=pixel_features, seed=4)
    own, other = scored
    assert own["step"] == logged["step"] == 6 and own["num_fake"] == 12
    for name in ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"):
        assert own[name] == logged[name], name
    assert "Latents: seed 3, epoch 2 (those of the training run's own evaluation" in text
    assert other["fid"] != logged["fid"] and other["latents"] == "seed 4, epoch 2"


def test_quiet_output_drops_backend_news_and_shows_warnings_as_one_line(monkeypatch, capsys):
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    for name in ("absl", "jax", "jax._src.xla_bridge"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    offline.quiet_output()
    assert not logging.getLogger("jax._src.xla_bridge").isEnabledFor(logging.INFO)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("FID from 16 real and 16 generated images", SmallSampleWarning, 1)
    assert capsys.readouterr().err == "warning: FID from 16 real and 16 generated images\n"


def save_image_sets(folder, num):
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (num, 28, 28), dtype=np.uint8)
    np.savez(folder / "real.npz", images=real)
    fake_folder = folder / "fake"
    fake_folder.mkdir()
    for index in range(num):
        darker = np.clip(real[index].astype(int) // 2 + 60, 0, 255).astype(np.uint8)
        Image.fromarray(darker).save(fake_folder / f"{index:02d}.png")
    return folder / "real.npz", fake_folder


def test_two_image_sets_give_one_small_n_warning_and_a_report(tmp_path, monkeypatch):
    real, fake = save_image_sets(tmp_path, 8)
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = offline.run(
            real=real, fake=fake, batch_size=4, html_report="r.html", feature_fn=pixel_features
        )
    assert [warning.category for warning in caught] == [SmallSampleWarning]
    assert "8 real and 8 generated" in str(caught[0].message)
    assert (tmp_path / "fid_result.txt").read_text() == text
    assert "N real: 8" in text and "Feature precision: float32" in text
    assert "the --real set" in (tmp_path / "r.html").read_text()


def test_load_image_set_from_npz_and_folder(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 5, 5), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", images=images)
    np.testing.assert_array_equal(offline.load_image_set(tmp_path / "set.npz"), images)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index}.png")
    np.testing.assert_array_equal(offline.load_image_set(folder), images)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.npz", "does not exist"),
        (lambda p: (p / "a.txt").write_text("x") and p / "a.txt", "allowed inputs"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "holds no"),
        (lambda p: (p / "bad.npz").write_bytes(b"nope") and p / "bad.npz", "not a readable"),
    ],
)
def test_load_image_set_refuses_bad_paths(tmp_path, make, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        offline.load_image_set(make(tmp_path))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"real": "a.npz"}, "go together"),
        ({}, "give --workdir"),
        ({"workdir": "x", "real": "a", "fake": "b"}, "not both"),
        ({"workdir": "x", "num_samples": 1}, "num_samples"),
        ({"workdir": "x", "num_samples": 5}, "num_samples=5 is invalid; allowed: 6 or more"),
        ({"workdir": "x", "batch_size": -1}, "batch_size=-1 is invalid; allowed: 0 \\(auto\\)"),
        ({"real": "a.npz", "fake": "b.npz", "seed": 1}, "--seed picks the latents of a --workdir"),
        ({"workdir": "x", "feature_dtype": "float16"}, "feature_dtype"),
    ],
)
def test_run_refuses_inconsistent_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        offline.run(**arguments)


@pytest.fixture
def population_workdir(tmp_path, tiny_config, monkeypatch):
    """A population of 2 GANs' workdir (step 3); its dataset is 40 random images.

    Returns the workdir and the stacked state saved in it.
    """
    config = tiny_config(
        "dcgan",
        fid_num_samples=12,
        fid_batch_size=6,
        kid_subset_size=6,
        kid_num_subsets=2,
        population=2,
    )
    state = write_population_checkpoint(tmp_path, config, 3)
    fake_splits(monkeypatch)
    return tmp_path, state


def test_member_is_scored_into_a_member_named_file(population_workdir, monkeypatch):
    from jaxgan.core import population

    workdir, stacked = population_workdir
    scored = []
    original = offline.evaluation.Evaluator.generated

    def recording_generated(self, state, key, **options):
        scored.append(state)
        return original(self, state, key, **options)

    monkeypatch.setattr(offline.evaluation.Evaluator, "generated", recording_generated)
    texts = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        for member in (1, 0):
            texts[member] = offline.run(
                workdir=workdir, num_samples=10, batch_size=5, feature_fn=pixel_features,
                member=member,
            )  # fmt: skip
    for member in (0, 1):
        path = workdir / f"fid_result_step3_n10_member{member}.txt"
        assert path.read_text() == texts[member]
    assert not (workdir / "fid_result_step3_n10.txt").exists()
    assert texts[0] != texts[1]
    for state, member in zip(scored, (1, 0), strict=True):
        for leaf, expected in zip(
            jax.tree.leaves(state.g_params),
            jax.tree.leaves(population.member(stacked.g_params, member)),
            strict=True,
        ):
            np.testing.assert_array_equal(leaf, expected)
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(scored[0].g_params), jax.tree.leaves(scored[1].g_params))
    ), "the members' generators are alike"


def test_member_runs_own_result_files_and_bad_members_are_refused(population_workdir):
    workdir, _ = population_workdir
    for name in ("fid_result.txt", "fid_result_member1.txt", "fid_result_member0.txt"):
        with pytest.raises(ValueError, match="own result file"):
            offline.run(workdir=workdir, output=workdir / name, member=1, feature_fn=pixel_features)
    for member, needle in ((None, "got None"), (2, "got 2")):
        with pytest.raises(ValueError, match=rf"member=0\.\.1 \(--member.*\); {needle}"):
            offline.run(workdir=workdir, member=member, feature_fn=pixel_features)
    with pytest.raises(ValueError, match="give --workdir"):
        offline.run(real="a.npz", fake="b.npz", member=0)
    assert sorted(path.name for path in workdir.iterdir()) == ["checkpoints", "config.json"]


def test_member_of_a_single_gan_workdir_is_refused(workdir):
    with pytest.raises(ValueError, match="not a population"):
        offline.run(workdir=workdir, member=0, feature_fn=pixel_features)


def test_member_flag_reaches_the_command(population_workdir):
    workdir, _ = population_workdir
    for flags, needle in (((), "got None"), (("--member=5",), "got 5")):
        result = subprocess.run(
            [sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}", *flags],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 1
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "population of 2 GANs" in result.stderr and needle in result.stderr
