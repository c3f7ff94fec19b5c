"""Project storage: the only package that writes SQL."""

from .db import StoreError
from .project import SUFFIX, Project, is_project

__all__ = ["Project", "StoreError", "SUFFIX", "is_project"]
