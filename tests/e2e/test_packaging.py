"""Build the wheel and run the installer smoke test against it (slow: --run-slow)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True, timeout=600)
    return next(out.glob("mskstudio-*.whl"))


@pytest.mark.slow
def test_wheel_carries_resources_and_passes_smoke_test(tmp_path):
    if shutil.which("python3.11") is None:
        pytest.skip("python3.11 is needed for the clean install")
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "mskstudio/resources/icons/mskstudio.png" in names
    assert any(n.startswith("mskstudio/gui/") for n in names)
    env = {**os.environ, "SMOKE_OUT": str(tmp_path)}
    result = subprocess.run(["bash", str(ROOT / "installers" / "smoke_test.sh"), str(wheel)],
                            capture_output=True, text=True, timeout=1800, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "smoke test passed" in result.stdout
    assert (tmp_path / "smoke_screenshot.png").stat().st_size > 10_000
