"""Project storage: the only package that writes SQL."""

from mskstudio.store.db import StoreError
from mskstudio.store.project import SUFFIX, Project, is_project

__all__ = ["Project", "StoreError", "SUFFIX", "is_project"]
