"""House rules that are easy to break silently: Qt-free core, package list, fast CLI."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_hold():
    """pyproject.toml: the core never imports Qt; the layers gui | cli > jobrun > ml > io >
    store > (domain, jobs, imaging) import only downwards, lazy imports included."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout  # Qt-free core; layers


def test_every_package_folder_is_packaged():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "mskstudio").rglob("__init__.py")}
    assert found - listed == set(), "add these packages to [tool.setuptools] packages"


def test_cli_help_does_not_import_heavy_modules():
    code = ("import sys, mskstudio.cli as c; c.build_parser(); "
            "print(','.join(m for m in ('torch','faiss','PySide6','pyqtgraph') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def _import_graph():
    import grimp

    # Every import that runs, those inside functions included; ``if TYPE_CHECKING:`` imports
    # never run (a repository naming its Project in annotations is no cycle).
    # No cache: a cached graph outlives an edit whose file time did not change.
    return grimp.build_graph("mskstudio", exclude_type_checking_imports=True, cache_dir=None)


def test_no_import_cycles_between_modules():
    """No module reaches itself through imports, not even through one inside a function:
    a cycle hidden by a lazy import breaks as soon as someone moves that import up."""
    graph = _import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph.find_modules_directly_imported_by(module):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert cycles == [], f"import cycles: {cycles}"


def test_gui_runs_no_sql():
    """The GUI reads and writes through the store's methods, never SQL of its own."""
    import re

    sql = re.compile(r"\.db\.(query|one|scalar|execute|executemany|transaction)\(")
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "mskstudio" / "gui").rglob("*.py")
                 if sql.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
