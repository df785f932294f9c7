"""benchmarks.quality: aggregation, per-class FID, the floor's cache, and one real run."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import jax
import numpy as np
import pytest

from benchmarks import quality
from jaxgan.data.fashion_mnist import load_fashion_mnist
from jaxgan.evaluation import Evaluator
from jaxgan.metrics import feature_statistics, frechet_distance

REPO_ROOT = Path(__file__).resolve().parents[1]
# Small N on purpose; the warning is tested with the metrics.
pytestmark = pytest.mark.filterwarnings("ignore::jaxgan.metrics.SmallSampleWarning")


def _settings(num_samples):
    return types.SimpleNamespace(
        fid_num_samples=num_samples, fid_batch_size=16, kid_subset_size=8, kid_num_subsets=5
    )


class CountingFeatures:
    """A cheap stand-in for Inception: a 9x9 subsampling of the red channel, [B, 81]."""

    def __init__(self):
        self.images = 0
        self.fn = jax.jit(lambda x: x[:, ::37, ::37, 0].reshape(x.shape[0], -1))

    def __call__(self, images):
        self.images += images.shape[0]
        return self.fn(images)


@pytest.fixture(scope="module")
def splits():
    train_images, train_labels = load_fashion_mnist("train")
    test_images, test_labels = load_fashion_mnist("test")
    return (train_images[:200, ..., None], train_labels[:200],
            test_images[:200, ..., None], test_labels[:200])  # fmt: skip


def _evaluator(splits, num, features, cache_dir):
    _, _, test_images, test_labels = splits
    return Evaluator(
        _settings(num), test_images, test_labels, reference_name="fashion_mnist:test",
        cache_dir=cache_dir, feature_fn=features,
    )  # fmt: skip


def test_summarise_gives_mean_and_sample_std_over_seeds():
    records = [{"fid": 10.0, "recall": 0.5}, {"fid": 12.0}, {"fid": 14.0, "recall": 0.7}]
    summary = quality.summarise(records, ("fid", "recall", "precision"))
    assert summary["fid_mean"] == pytest.approx(12.0)
    assert summary["fid_std"] == pytest.approx(2.0)  # ddof=1: sqrt((4 + 0 + 4) / 2)
    assert summary["fid_n"] == 3
    assert summary["recall_mean"] == pytest.approx(0.6) and summary["recall_n"] == 2
    assert summary["recall_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert "precision_mean" not in summary
    single = quality.summarise([{"fid": 3.0}], ("fid",))
    assert single == {"fid_mean": 3.0, "fid_std": None, "fid_n": 1}


@pytest.mark.parametrize("num_a, num_b, dim", [(12, 9, 30), (50, 60, 8)])
def test_svd_frechet_distance_equals_the_sqrtm_one(num_a, num_b, dim):
    rng = np.random.default_rng(num_a)
    a = rng.gamma(2.0, size=(num_a, dim))
    b = rng.gamma(2.5, size=(num_b, dim)) + 0.3
    expected = frechet_distance(*feature_statistics(a), *feature_statistics(b))
    assert quality.frechet_distance_of_features(a, b) == pytest.approx(expected, rel=1e-6)
    assert quality.frechet_distance_of_features(a, a) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("num", [5, 40])
def test_fid_of_features_equals_frechet_distance_on_either_side_of_the_dimension(num):
    rng = np.random.default_rng(num)
    a, b = rng.normal(size=(num, 10)), rng.normal(size=(num + 3, 10)) * 1.5 + 0.2
    expected = frechet_distance(*feature_statistics(a), *feature_statistics(b))
    assert quality.fid_of_features(a, b) == pytest.approx(expected, rel=1e-6)


def test_per_class_fid_compares_each_class_with_its_own_real_images():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    centres = np.array([0.0, 5.0, 10.0])[:, None]
    real = rng.normal(size=(120, 4)) + centres[labels]
    fake = rng.normal(size=(120, 4)) + centres[labels]
    right = quality.per_class_fid(real, labels, fake, labels, 3)
    for label in range(3):
        subset = labels == label
        expected = quality.frechet_distance_of_features(real[subset], fake[subset])
        assert right["per_class_fid"][label] == pytest.approx(expected)
    assert right["per_class_fid_mean"] == pytest.approx(np.mean(right["per_class_fid"]))
    assert right["per_class_counts"] == [[40, 40]] * 3
    assert right["per_class_fid_mean"] < 2.0
    # Generated images of the wrong class (labels shifted by one) are far from the real ones.
    shifted = quality.per_class_fid(real, labels, fake, (labels + 1) % 3, 3)
    assert shifted["per_class_fid_mean"] > 50 * right["per_class_fid_mean"]


def test_per_class_fid_skips_classes_with_fewer_than_two_images():
    features = np.random.default_rng(1).normal(size=(7, 3))
    real_labels = np.array([0, 0, 0, 1, 1, 1, 2])
    result = quality.per_class_fid(features, real_labels, features, real_labels, 4)
    assert result["per_class_fid"][2] is None and result["per_class_fid"][3] is None
    assert result["per_class_counts"] == [[3, 3], [3, 3], [1, 1], [0, 0]]
    assert result["per_class_fid_mean"] == pytest.approx(0.0, abs=1e-8)


def test_the_floor_is_train_against_test_and_cached_by_n(splits, tmp_path):
    train_images, train_labels, test_images, _ = splits
    features = CountingFeatures()
    evaluator = _evaluator(splits, 40, features, tmp_path)
    floor = quality.fid_floor(
        evaluator, train_images, train_labels, num_classes=10, cache_dir=tmp_path
    )
    assert floor["cached"] is False and features.images > 0
    assert floor["num_samples"] == 40 and floor["reference"] == "fashion_mnist:test[:40]"
    real = np.asarray(features.fn(_preprocessed(test_images[:40])))
    fake = np.asarray(features.fn(_preprocessed(train_images[:40])))
    assert floor["fid"] == pytest.approx(
        frechet_distance(*feature_statistics(real), *feature_statistics(fake)), rel=1e-5
    )
    assert len(floor["per_class_fid"]) == 10
    assert [count[0] for count in floor["per_class_counts"]] == np.bincount(
        splits[3][:40], minlength=10
    ).tolist()

    # A new process (a new Evaluator) at the same N computes no feature at all.
    fresh_features = CountingFeatures()
    again = quality.fid_floor(
        _evaluator(splits, 40, fresh_features, tmp_path), train_images, train_labels,
        num_classes=10, cache_dir=tmp_path,
    )  # fmt: skip
    assert again["cached"] is True and fresh_features.images == 0
    assert {k: v for k, v in again.items() if k != "cached"} == {
        k: v for k, v in floor.items() if k != "cached"
    }
    # Another N is another floor.
    other = quality.fid_floor(
        _evaluator(splits, 30, fresh_features, tmp_path), train_images, train_labels,
        num_classes=10, cache_dir=tmp_path,
    )  # fmt: skip
    assert other["cached"] is False and other["num_samples"] == 30 and fresh_features.images > 0
    assert len(list(tmp_path.glob("quality_floor_*.json"))) == 2


def _preprocessed(images):
    from jaxgan.metrics import inception_preprocess

    return inception_preprocess(images)


class LabelZero:
    """A classifier stub that calls every image class 0."""

    def predict(self, images):
        return np.zeros(len(images), np.int32)


def test_evaluate_state_of_a_conditional_model_reports_classes(splits, tiny_config, tmp_path):
    from jaxgan.core import create_state

    config = tiny_config("dcgan", conditional=True)
    state = create_state(config, jax.random.key(0), num_classes=10)
    evaluator = _evaluator(splits, 60, CountingFeatures(), tmp_path)
    result = quality.evaluate_state(state, 0, evaluator, LabelZero())
    reference_labels = splits[3][:60]
    counts = np.bincount(reference_labels, minlength=10)
    # Generated with the reference labels: as many images per class as test[:N] holds.
    assert [fake for _, fake in result["per_class_counts"]] == counts.tolist()
    assert [real for real, _ in result["per_class_counts"]] == counts.tolist()
    assert result["class_accuracy"] == pytest.approx(counts[0] / 60)
    assert result["per_class_accuracy"][0] == 1.0
    assert all(a == 0.0 for a in result["per_class_accuracy"][1:] if a is not None)
    assert np.isfinite(result["fid"]) and result["step"] == 0


def test_evaluate_state_is_reproducible_and_unconditional_has_no_classes(
    splits, tiny_config, tmp_path
):
    from jaxgan.core import create_state

    state = create_state(tiny_config("dcgan"), jax.random.key(0))
    evaluator = _evaluator(splits, 40, CountingFeatures(), tmp_path)
    first = quality.evaluate_state(state, 3, evaluator, LabelZero())
    second = quality.evaluate_state(state, 3, evaluator, LabelZero())
    other_seed = quality.evaluate_state(state, 4, evaluator, LabelZero())
    assert "per_class_fid" not in first and "class_accuracy" not in first
    assert first["fid"] == second["fid"] != other_seed["fid"]


def test_run_names_commands_and_environment():
    assert quality.run_name("experiments/configs/dcgan.py", []) == "dcgan"
    assert quality.run_name("experiments/configs/dcgan.py:smoke", []) == "dcgan_smoke"
    tagged = quality.run_name("experiments/configs/dcgan.py", ["num_epochs=5"])
    assert tagged.startswith("dcgan-") and tagged != quality.run_name(
        "experiments/configs/dcgan.py", ["num_epochs=6"]
    )
    command = quality.train_command("c.py:smoke", 2, "out/seed2", ["num_epochs=5"])
    assert command[:3] == ["-m", "experiments.train", "--config=c.py:smoke"]
    assert "--config.seed=2" in command and "--workdir=out/seed2" in command
    assert "--config.eval_every=0" in command and command[-1] == "--config.num_epochs=5"
    assert not any("population" in part for part in command)
    together = quality.train_command("c.py", 4, "out/seeds4-6", [], members=3)
    assert "--config.seed=4" in together and "--config.population=3" in together
    assert quality.parse_args(["--config=c.py"]).population
    assert not quality.parse_args(["--config=c.py", "--no-population"]).population
    # An override of population decides for itself: a process per seed.
    assert not quality.parse_args(["--config=c.py", "--override", "population=2"]).population
    environment = quality.subprocess_environment(3, {"PATH": "/bin"})
    assert environment["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert environment["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.300"
    assert quality.subprocess_environment(1, {"PATH": "/bin"}) == {"PATH": "/bin"}
    kept = quality.subprocess_environment(2, {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.2"})
    assert kept["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.2"
    with pytest.raises(SystemExit):
        quality.parse_args(["--config=c.py", "--override", "num_epochs"])
    with pytest.raises(SystemExit):
        quality.parse_args(["--config=c.py", "--override", "seed=3"])


def test_markdown_table_shows_mean_and_std_and_the_floor():
    records = [{"fid": 10.0, "kid_mean": 0.010}, {"fid": 14.0, "kid_mean": 0.012}]
    summary = {"name": "dcgan", "num_seeds": 2, "num_samples": 10000,
               **quality.summarise(records), "floor": {"fid": 2.5}}  # fmt: skip
    table = quality.markdown_table([summary]).splitlines()
    assert table[0].startswith("| config |") and len(table) == 3
    assert table[0].count("|") == table[1].count("|") == table[2].count("|")
    assert "| dcgan | 2 | 10000 | 12.00 ± 2.83 | 11.00 ± 1.41 |" in table[2]
    assert "| 2.50 |" in table[2]


def run_benchmark(command):
    """Runs the benchmark on CPU; (the completed process, its JSON lines)."""
    completed = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    return completed, lines


def test_the_benchmark_trains_a_seed_and_prints_json_lines(tmp_path):
    """One real run: the smoke config, one seed, N=16 with the real Inception network."""
    workdir = tmp_path / "quality"
    command = [
        sys.executable, "-m", "benchmarks.quality", "--config=experiments/configs/dcgan.py:smoke",
        "--seeds=1", "--first_seed=5", "--num_samples=16", "--batch_size=16",
        f"--workdir={workdir}", "--no-population",
    ]  # fmt: skip
    completed, lines = run_benchmark(command)
    seeds = [line for line in lines if "seed" in line and "summary" not in line]
    floors = [line for line in lines if line.get("floor") is True]
    summaries = [line for line in lines if line.get("summary")]
    assert len(seeds) == len(floors) == len(summaries) == 1
    seed = seeds[0]
    assert seed["seed"] == 5 and seed["epochs"] == 1 and seed["num_samples"] == 16
    assert seed["reference"] == "fashion_mnist:test[:16]"
    for key in ("fid", "kid_mean", "precision", "recall", "train_seconds", "eval_seconds"):
        assert np.isfinite(seed[key]), key
    assert seed["step"] == 2048 // 64
    assert "--config.seed=5" in seed["command"] and seed["device"]["platform"] == "cpu"
    assert floors[0]["fake"] == "fashion_mnist:train[:16]" and np.isfinite(floors[0]["fid"])
    assert summaries[0]["fid_mean"] == seed["fid"] and summaries[0]["fid_std"] is None
    assert summaries[0]["floor"]["fid"] == floors[0]["fid"]
    assert "| dcgan_smoke | 1 | 16 |" in completed.stdout
    run = workdir / "dcgan_smoke" / "seed5"
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 5 and config["eval_every"] == 0
    assert (workdir / "dcgan_smoke" / "seed5.log").is_file()
    assert not (run / "fid_result.txt").exists()


def test_the_benchmark_trains_its_seeds_as_one_population(tmp_path):
    """Two seeds in one training process; each member is scored as its seed."""
    workdir = tmp_path / "quality"
    command = [
        sys.executable, "-m", "benchmarks.quality", "--config=experiments/configs/dcgan.py:smoke",
        "--seeds=2", "--first_seed=3", "--num_samples=16", "--batch_size=16",
        f"--workdir={workdir}", "--override", "num_train_examples=256",
    ]  # fmt: skip
    completed, lines = run_benchmark(command)
    seeds = [line for line in lines if "seed" in line and "summary" not in line]
    assert [(s["seed"], s["population_member"]) for s in seeds] == [(3, 0), (4, 1)]
    assert seeds[0]["fid"] != seeds[1]["fid"]
    assert all("--config.population=2" in s["command"] for s in seeds)
    (summary,) = [line for line in lines if line.get("summary")]
    assert summary["seeds"] == [3, 4] and summary["fid_std"] is not None
    run = workdir / next(p.name for p in workdir.iterdir()) / "seeds3-4"
    config = json.loads((run / "config.json").read_text())
    assert config["population"] == 2 and config["seed"] == 3
    assert "training" in completed.stderr and "seeds 3..4 as one population" in completed.stderr


def test_train_minutes_stops_a_process_at_the_limit_and_spares_one_that_ends_before(
    tmp_path, monkeypatch
):
    # Stand-ins for experiments.train: one exits with 128 + 15 on SIGTERM as it does, one ends.
    scripts = {
        "slow": "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + 15))\ntime.sleep(120)",
        "quick": "pass",
    }
    monkeypatch.setattr(quality, "train_command", lambda spec, *_: ["-c", scripts[Path(spec).name]])
    jobs = [
        quality.TrainJob(name, name, 0, tmp_path / name, (), tmp_path / f"{name}.log")
        for name in ("slow", "quick")
    ]
    quality.run_jobs(jobs, parallel=2, limit_seconds=2.0)
    slow, quick = jobs
    assert slow.stopped_at_limit and slow.returncode == 143 and 2 <= slow.seconds < 60
    assert not quick.stopped_at_limit and quick.returncode == 0
    with pytest.raises(SystemExit):
        quality.parse_args(["--config=x.py", "--train_minutes=-1"])


def test_a_config_a_population_cannot_share_trains_a_process_per_seed(tmp_path):
    resnet, dcgan = "experiments/configs/resnet.py", "experiments/configs/dcgan.py"
    assert quality.single_gan_settings(resnet, []) == ["lr_decay"]
    assert quality.single_gan_settings(resnet, ["lr_decay=none"]) == []
    assert quality.single_gan_settings(dcgan, []) == []
    assert quality.single_gan_settings(dcgan, ["d_learning_rate=4e-4"]) == ["d_learning_rate"]
    args = quality.parse_args([f"--config={resnet}", f"--config={dcgan}", "--seeds=2"])
    jobs = quality.plan_jobs(args, tmp_path)
    assert [(job.name, job.seed, job.members) for job in jobs] == [
        ("resnet", 0, 0), ("resnet", 1, 0), ("dcgan", 0, 2)
    ]  # fmt: skip
    assert jobs[1].workdir == tmp_path / "resnet" / "seed1"
    assert "--config.population" not in jobs[0].command
    assert "--config.population=2" in jobs[2].command
    args = quality.parse_args([f"--config={dcgan}", "--seeds=2", "--no-population"])
    assert [job.members for job in quality.plan_jobs(args, tmp_path)] == [0, 0]


def test_read_epochs_takes_the_last_whole_record(tmp_path):
    assert quality.read_epochs(tmp_path) == (None, None)
    lines = [json.dumps({"epoch": e, "epoch_seconds": 1.5}) for e in (1, 2)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"epoch": 3, "epo')
    assert quality.read_epochs(tmp_path) == (2, 3.0)
