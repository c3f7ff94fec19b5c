"""Package data: icons, stylesheets, the demo configuration and README pictures."""

from importlib import resources as _resources
from pathlib import Path


def resource_path(name: str) -> Path:
    """Path of a bundled resource file (works from a checkout and from an installed wheel)."""
    return Path(str(_resources.files(__name__).joinpath(name)))
