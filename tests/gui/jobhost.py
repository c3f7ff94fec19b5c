"""``python tests/gui/jobhost.py run-job PROJECT JOB_ID --jsonl``: the CLI with test job kinds.

The GUI runner's subprocess lane is pointed here in tests, so test kinds run in a real
subprocess exactly like training jobs do in the application.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gui_testjobs  # noqa: E402

from mskstudio import jobrun  # noqa: E402
from mskstudio.cli import main  # noqa: E402

jobrun.JOB_KINDS.update(gui_testjobs.KINDS)
raise SystemExit(main(sys.argv[1:]))
