"""``python -m mskstudio.gui [PROJECT]`` (what ``mskstudio gui PROJECT`` execs)."""

from .app import main

raise SystemExit(main())
