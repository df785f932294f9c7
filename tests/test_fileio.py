"""Atomic writes: all or nothing, and modes that follow the umask."""

import json
import logging
import os
import stat

import numpy as np
import pytest

from jaxgan.fileio import (
    atomic_output,
    atomic_savez,
    atomic_write_bytes,
    atomic_write_text,
    read_jsonl,
)


def test_writes_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a" / "report.txt", "hello\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o077)
        path = atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(previous)
    assert (tmp_path / "a" / "report.txt").read_text() == "hello\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "kept.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_output(path, "w") as handle:
            handle.write("half of the new")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]


def test_savez_round_trip(tmp_path):
    path = atomic_savez(tmp_path / "x.npz", images=np.arange(6, dtype=np.uint8).reshape(2, 3))
    with np.load(path) as archive:
        np.testing.assert_array_equal(archive["images"], [[0, 1, 2], [3, 4, 5]])


def test_unknown_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="allowed: 'wb' or 'w'"):
        with atomic_output(tmp_path / "x", "a"):
            pass


def test_read_jsonl_skips_a_cut_last_line_and_is_strict_or_lenient_about_the_others(
    tmp_path, caplog
):
    path = tmp_path / "metrics.jsonl"
    records = [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]
    lines = [json.dumps(record) for record in records]
    path.write_text("\n".join(lines) + "\n\n" + lines[0][:7])
    assert read_jsonl(path) == read_jsonl(path, strict=False) == records
    path.write_text(f"{lines[0]}\n{lines[1][:5]}\n[1, 2]\n{lines[2]}\n")
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_jsonl(path)
    with caplog.at_level(logging.WARNING, logger="jaxgan.fileio"):
        assert read_jsonl(path, strict=False) == [records[0], records[2]]
    assert "line 2 is not valid JSON" in caplog.text and "line 3 is list" in caplog.text
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "missing.jsonl", strict=False)
