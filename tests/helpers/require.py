"""What set-up installs (the dataset, the Inception weights, Chromium): a skip where it is
missing, a failure under `JAXGAN_REQUIRE_ALL=1` (CI, `.ci/run`), so that a set-up that
silently failed cannot leave CI green.

    require_or_skip(WEIGHTS.exists(), "FID Inception weights not installed: ...")
    pytestmark = requirement(shutil.which("chromium"), "Chromium is not installed: ...")

tests/conftest.py applies `requirement` marks, and also fails (under the variable) any plain
skip whose reason names one of `REQUIREMENTS`.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL_VARIABLE = "JAXGAN_REQUIRE_ALL"
# Words that the reasons of the existing skips on a missing requirement hold.
REQUIREMENTS = ("dataset-fashion-mnist", "Inception weights", "Chromium")


def require_all() -> bool:
    return os.environ.get(REQUIRE_ALL_VARIABLE, "") not in ("", "0")


def failure_reason(reason: str) -> str:
    return f"{reason} ({REQUIRE_ALL_VARIABLE}=1: a missing requirement fails, not skips)"


def names_a_requirement(reason: str) -> bool:
    return any(word.lower() in reason.lower() for word in REQUIREMENTS)


def require_or_skip(condition: object, reason: str) -> None:
    """Skips the test when `condition` is false; under JAXGAN_REQUIRE_ALL=1, fails it."""
    if condition:
        return
    if require_all():
        pytest.fail(failure_reason(reason), pytrace=False)
    pytest.skip(reason)


def requirement(condition: object, reason: str) -> pytest.MarkDecorator:
    """The mark form of `require_or_skip`, for a test, a class or a module's `pytestmark`."""
    return pytest.mark.requirement(bool(condition), reason=reason)
