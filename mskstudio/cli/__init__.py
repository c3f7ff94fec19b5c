"""Command line: ``mskstudio SUBCOMMAND …`` (also ``python -m mskstudio``).

Each area of the product registers its subcommands from its own module (listed in
``COMMAND_MODULES``), so adding a capability never means editing a god-file.
Nothing heavy (torch, faiss, Qt) is imported here: ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sqlite3
import sys

from mskstudio import __version__

COMMAND_MODULES = (
    "mskstudio.cli.cmd_project",
    "mskstudio.cli.cmd_key",
    "mskstudio.cli.cmd_data",
    "mskstudio.cli.cmd_ml",
    "mskstudio.cli.cmd_retrieval",
    "mskstudio.cli.cmd_train",
    "mskstudio.cli.cmd_fuse",
    "mskstudio.cli.cmd_detect",
    "mskstudio.cli.cmd_annotate",
    "mskstudio.cli.cmd_measure",
    "mskstudio.cli.cmd_readers",
    "mskstudio.cli.cmd_exchange",
    "mskstudio.cli.cmd_report",
    "mskstudio.cli.cmd_scale",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mskstudio",
        description="Human-in-the-loop deep learning on musculoskeletal radiographs.",
    )
    parser.add_argument("--version", action="version", version=f"mskstudio {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from mskstudio.jobrun import UserError
    from mskstudio.jobs import Cancelled
    from mskstudio.store import StoreError
    from mskstudio.store.media import storage_failure

    try:
        return int(args.func(args) or 0)
    except (UserError, StoreError, FileNotFoundError, NotADirectoryError, PermissionError,
            ValueError) as exc:
        if args.debug:
            raise
        print(f"mskstudio: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (OSError, sqlite3.DatabaseError) as exc:
        problem = storage_failure(exc)  # a full or read-only disk met outside a job
        if problem is None or args.debug:
            raise
        print(f"mskstudio: error: {args.command} failed: {problem}", file=sys.stderr)
        return 1
    except Cancelled:
        print("mskstudio: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("mskstudio: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
