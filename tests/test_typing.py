"""The package type-checks: mypy with the project's configuration (pyproject.toml's
``[tool.mypy]``) reports no error."""

from __future__ import annotations

import subprocess
import sys

import pytest
from _support import REPO


@pytest.mark.slow
def test_mypy_reports_no_error():
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True,
                          text=True, timeout=280)
    if proc.returncode != 0:
        pytest.fail(f"mypy exited {proc.returncode}:\n{proc.stdout}{proc.stderr}", pytrace=False)
