"""``python -m mskstudio.gui [PROJECT]`` (what ``mskstudio gui PROJECT`` execs)."""

from mskstudio.gui.app import main

raise SystemExit(main())
