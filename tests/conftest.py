"""Shared fixtures. Qt runs offscreen; the phantom project is built once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MSKSTUDIO_USER", "tester")
# Tests never pick up a user's real settings or recent-project list.
os.environ.setdefault("MSKSTUDIO_SETTINGS_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / "mskstudio-test-settings"))

# ... nor read or write the user's real pseudonym keys (store/keys.py).
os.environ.setdefault("MSKSTUDIO_KEY_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / "mskstudio-test-keys"))

PHANTOM_IMAGES = 60


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def phantom_archive(tmp_path_factory) -> Path:
    """A small phantom DICOM archive (returns the manifest.csv path)."""
    from mskstudio.io.phantoms import generate_archive

    out = tmp_path_factory.mktemp("phantom-archive")
    return generate_archive(out, n_images=PHANTOM_IMAGES, seed=7, size="small", workers=1)


@pytest.fixture(scope="session")
def phantom_project_path(tmp_path_factory, phantom_archive) -> Path:
    """A project with the phantom archive imported, clinical data and truth labels.

    Built once; tests that modify a project should use ``phantom_project`` (a copy)."""
    from mskstudio.io.clinical import run_import_clinical
    from mskstudio.io.demo import _store_ground_truth
    from mskstudio.io.importer import run_import
    from mskstudio.jobs import JobContext
    from mskstudio.store import Project

    root = tmp_path_factory.mktemp("projects") / "phantoms.mskproj"
    with Project.create(root) as project:
        run_import(project, {"paths": [str(phantom_archive.parent / "dicom")], "workers": 1},
                   JobContext.null())
        run_import_clinical(project, {"path": str(phantom_archive.parent / "clinical.csv")},
                            JobContext.null())
        _store_ground_truth(project, phantom_archive)
    return root


@pytest.fixture
def phantom_project(phantom_project_path, tmp_path):
    """A private, writable copy of the phantom project, opened."""
    from mskstudio.store import Project

    copy = tmp_path / "copy.mskproj"
    shutil.copytree(phantom_project_path, copy)
    project = Project.open(copy)
    yield project
    project.close()


@pytest.fixture
def new_project(tmp_path):
    from mskstudio.store import Project

    project = Project.create(tmp_path / "p.mskproj")
    yield project
    project.close()
