"""JAXGAN_REQUIRE_ALL=1 (set by .ci/run) turns skips on a missing requirement into failures:
through `require_or_skip`, a `requirement` mark, or a plain skip whose reason names one."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CASES = """
import pytest

from tests.helpers.require import require_or_skip, requirement


def test_helper():
    require_or_skip(False, "FID Inception weights not installed")


@requirement(False, reason="the dataset is missing")
def test_mark():
    pass


def test_plain_skip_naming_a_requirement():
    pytest.skip("Chromium is not installed: apt-get install chromium chromium-driver")


@pytest.mark.skipif(True, reason="Debian's dataset-fashion-mnist is not installed")
def test_skipif_naming_a_requirement():
    pass


def test_unrelated_skip():
    pytest.skip("root writes into read-only folders")


@requirement(True, reason="present")
def test_present():
    pass
"""


def _outcomes(tmp_path, require_all: str | None) -> dict[str, str]:
    (tmp_path / "test_cases.py").write_text(CASES)
    env = {k: v for k, v in os.environ.items() if k != "JAXGAN_REQUIRE_ALL"}
    if require_all is not None:
        env["JAXGAN_REQUIRE_ALL"] = require_all
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-v",
         str(tmp_path / "test_cases.py")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return dict(re.findall(r"::(test_\w+) (PASSED|FAILED|SKIPPED|ERROR)", result.stdout))


@pytest.mark.parametrize("require_all", [None, "0"])
def test_a_missing_requirement_skips_by_default(tmp_path, require_all):
    outcomes = _outcomes(tmp_path, require_all)
    assert outcomes == {
        "test_helper": "SKIPPED", "test_mark": "SKIPPED",
        "test_plain_skip_naming_a_requirement": "SKIPPED",
        "test_skipif_naming_a_requirement": "SKIPPED",
        "test_unrelated_skip": "SKIPPED", "test_present": "PASSED",
    }  # fmt: skip


def test_under_require_all_a_missing_requirement_fails(tmp_path):
    outcomes = _outcomes(tmp_path, "1")
    # A test fails, or errors where a mark or skipif stops it in its set-up.
    failed = {name for name, outcome in outcomes.items() if outcome in ("FAILED", "ERROR")}
    assert failed == {
        "test_helper", "test_mark", "test_plain_skip_naming_a_requirement",
        "test_skipif_naming_a_requirement",
    }  # fmt: skip
    assert outcomes["test_unrelated_skip"] == "SKIPPED" and outcomes["test_present"] == "PASSED"


def test_ci_sets_require_all_before_it_runs_the_tests():
    script = (REPO_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^export JAXGAN_REQUIRE_ALL=1$", script, re.M)
    assert script.index("export JAXGAN_REQUIRE_ALL=1") < script.index("pytest")
