"""Helpers of the torchrun/DDP tests: a real ``torch.distributed.run`` launch of the CLI with an
audit hook in every process that records which SQLite files it opened (so "only rank 0
touches the project" is checked, not assumed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

AUDIT = '''
import os, sys
def _hook(event, args):
    if event == "sqlite3.connect":
        with open(os.environ["MSK_AUDIT_LOG"], "a") as f:
            f.write(f"{os.environ.get('RANK', '-')} {args[0]}\\n")
sys.addaudithook(_hook)
'''


def ddp_env(tmp: Path, **extra) -> dict[str, str]:
    site = tmp / "audit_site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(AUDIT)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
            "MSK_AUDIT_LOG": str(tmp / "audit.log"), "OMP_NUM_THREADS": "1",
            "MSKSTUDIO_DDP_TIMEOUT_S": "60", **extra}


def rank_connections(log: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        r, db = line.split(" ", 1)
        out.setdefault(r, []).append(db)
    return out


def copy_project(base: Path, tmp: Path, name: str) -> Path:
    dst = tmp / f"{name}.mskproj"
    shutil.copytree(base, dst)
    return dst


def run_cli(args: list[str], tmp: Path, timeout: int = 300, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mskstudio", *args], env=ddp_env(tmp, **env), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def run_torchrun(argv: list[str], tmp: Path, timeout: int = 240, **env) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=ddp_env(tmp, **env), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def assert_only_rank0_opened(tmp: Path, project: Path) -> None:
    conns = rank_connections(tmp / "audit.log")
    assert "1" not in conns, conns  # rank 1 never opened any SQLite database
    assert any(project.name in db for db in conns.get("0", [])), conns
