"""The code base stays clean under the project's ruff configuration."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "mskstudio", "tests"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
