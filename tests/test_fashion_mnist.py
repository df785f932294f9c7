"""The data path: official gzip headers, IDX parsing, the numpy cache and error messages."""

import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxgan.data import fashion_mnist as data

TFDS_CHECKSUMS = (
    Path(__import__("tensorflow_datasets").__file__).parent / "url_checksums" / "fashion_mnist.txt"
)
needs_debian_files = pytest.mark.skipif(
    not (data.DEBIAN_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)",
)


def _tfds_sha256() -> dict[str, str]:
    rows = [line.split("\t") for line in TFDS_CHECKSUMS.read_text().splitlines() if line]
    return {row[3].strip(): row[2] for row in rows}


@needs_debian_files
@pytest.mark.parametrize("name", sorted(data._OFFICIAL_MTIME))
def test_restored_debian_files_match_tfds_registered_checksums(tmp_path, name):
    restored = tmp_path / f"{name}.gz"
    data.restore_official_gzip(data.DEBIAN_DIR / f"{name}.gz", restored)
    assert hashlib.sha256(restored.read_bytes()).hexdigest() == _tfds_sha256()[f"{name}.gz"]


def test_restore_official_gzip_rebuilds_header_and_keeps_the_stream(tmp_path):
    payload = b"\x00\x00\x08\x01\x00\x00\x00\x03abc"
    plain = tmp_path / "t10k-labels-idx1-ubyte.gz"
    plain.write_bytes(gzip.compress(payload, mtime=0))  # no file name, like Debian's
    restored = tmp_path / "out.gz"
    data.restore_official_gzip(plain, restored)
    raw = restored.read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x08"
    assert int.from_bytes(raw[4:8], "little") == 1504176627
    assert raw[8:10] == b"\x00\x03"
    assert raw[10:33] == b"t10k-labels-idx1-ubyte\x00"
    assert gzip.decompress(raw) == payload


def test_restore_official_gzip_rejects_non_gzip(tmp_path):
    bogus = tmp_path / "train-images-idx3-ubyte.gz"
    bogus.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="not a gzip file"):
        data.restore_official_gzip(bogus, tmp_path / "out.gz")


def test_read_idx_parses_shape_and_rejects_bad_files(tmp_path):
    idx = tmp_path / "images.idx"
    idx.write_bytes(
        b"\x00\x00\x08\x03"
        + (2).to_bytes(4, "big")
        + (2).to_bytes(4, "big")
        + (3).to_bytes(4, "big")
        + bytes(range(12))
    )
    expected = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(data.read_idx(idx), expected)
    idx.write_bytes(idx.read_bytes()[:-1])
    with pytest.raises(ValueError, match="header says shape"):
        data.read_idx(idx)


def test_data_dir_without_the_four_files_names_them(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        data._find_idx_dirs(str(tmp_path))


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="allowed"):
        data.load_fashion_mnist("validation")


def _write_fake_cache(cache_dir: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 60000),
        "test_images": rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 10000),
    }
    data.write_cache(data._cache_path(cache_dir), arrays)


def test_cached_data_loads_without_importing_tensorflow(tmp_path):
    _write_fake_cache(tmp_path)
    code = (
        "import sys; from jaxgan.data import fashion_mnist as data; "
        f"images, labels = data.load_fashion_mnist('test', cache_dir={str(tmp_path)!r}); "
        "assert images.shape == (10000, 28, 28) and images.dtype.name == 'uint8'; "
        "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_malformed_cache_is_ignored_not_trusted(tmp_path, monkeypatch):
    path = data._cache_path(tmp_path)
    path.write_bytes(b"garbage")
    calls = []

    def fake_tfds(tfds_data_dir, data_dir):
        calls.append(1)
        return {
            "test_images": np.zeros((10000, 28, 28), np.uint8),
            "test_labels": np.zeros(10000, np.int64),
            "train_images": np.zeros((60000, 28, 28), np.uint8),
            "train_labels": np.zeros(60000, np.int64),
        }

    monkeypatch.setattr(data, "_load_with_tfds", fake_tfds)
    images, _ = data.load_fashion_mnist("test", cache_dir=tmp_path)
    assert calls == [1] and images.shape == (10000, 28, 28)
    assert data._read_cache(path) is not None  # rewritten with good data


def test_no_source_error_lists_every_way_to_provide_the_data(tmp_path, monkeypatch):
    class UnpreparedBuilder:
        def is_prepared(self):
            return False

        def download_and_prepare(self, download_config=None):
            raise ConnectionError("no internet")

    class FakeTfds:
        builder = staticmethod(lambda name, data_dir=None: UnpreparedBuilder())

    monkeypatch.setattr(data, "import_tfds", lambda help_text="": FakeTfds)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "absent")
    with pytest.raises(data.DataUnavailableError) as error:
        data.load_fashion_mnist("train", cache_dir=tmp_path)
    message = str(error.value)
    for hint in (
        "apt-get install dataset-fashion-mnist",
        "data_dir",
        "tensorflow-cpu",
        "tfds_data_dir",
        "no internet",
    ):
        assert hint in message


def test_a_missing_data_dir_is_an_error_even_with_a_cache(tmp_path):
    _write_fake_cache(tmp_path)
    with pytest.raises(ValueError, match="is not a folder"):
        data.load_fashion_mnist("test", data_dir=str(tmp_path / "absent"), cache_dir=tmp_path)


def _prepare_command(*args: str, cache_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jaxgan.data", *args],
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "JAXGAN_CACHE_DIR": str(cache_dir)},
    )


def test_prepare_command_has_help_and_refuses_bad_arguments(tmp_path):
    help_result = _prepare_command("--help", cache_dir=tmp_path)
    assert help_result.returncode == 0 and "data_dir" in help_result.stdout
    extra = _prepare_command("a", "b", "c", cache_dir=tmp_path)
    assert extra.returncode == 2 and "unrecognized arguments: b c" in extra.stderr
    _write_fake_cache(tmp_path)
    missing = _prepare_command("/nonexistent/dir", cache_dir=tmp_path)
    assert missing.returncode == 1
    assert "data_dir='/nonexistent/dir' is not a folder" in missing.stderr
