"""Moved to ``mskstudio.imaging.masks`` (below the store, which encodes and measures masks).

Kept as a re-export so branches written before the move still import; new code
imports ``mskstudio.imaging.masks``.
"""

from mskstudio.imaging.masks import *  # noqa: F403
from mskstudio.imaging.masks import MaskDiff, Rect, StrokeRecorder  # noqa: F401
