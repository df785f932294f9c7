"""Every Python snippet of the README runs as printed, from the repository root."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
README = (REPO_ROOT / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, re.DOTALL)


def test_the_readme_has_its_snippets():
    assert len(SNIPPETS) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index):
    result = subprocess.run(
        [sys.executable, "-c", SNIPPETS[index]],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"snippet {index}:\n{SNIPPETS[index]}\n{result.stderr[-3000:]}"
    assert result.stdout.strip(), "every snippet prints what it shows"


def test_every_config_field_is_in_the_readme_reference():
    from jaxgan.training.config import FIELD_HELP, base_config

    for field in base_config():
        assert f"| `{field}` |" in README, field
        assert FIELD_HELP[field] in README, field


def test_every_command_uses_the_virtualenv_python():
    bare = [
        line
        for line in README.splitlines()
        if re.search(r"(^|[\s`])python3? (-m|tools/)", line) and ".venv/bin/python" not in line
    ]
    assert bare == []
