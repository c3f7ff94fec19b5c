"""The pseudonym key of a project: ``mskstudio key P [--export FILE | --import FILE]``, ``share``.

The key lives in the user's key store (``MSKSTUDIO_KEY_DIR`` or ``~/.config/mskstudio/keys``),
not in the project; the project holds its fingerprint.  Export and import carry the key
between machines of the same site; a collaborator who gets only the project cannot make
pseudonyms (so cannot tell whether a known patient is in it) and cannot import into it.
"""

from __future__ import annotations

from mskstudio.cli.common import add_project_arg, open_project
from mskstudio.store import keys


def register(sub) -> None:
    p = sub.add_parser("key", help="show, export or import the project's pseudonym key")
    add_project_arg(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--export", metavar="FILE",
                       help="write the key to FILE (mode 0600) to carry it to another machine of the site")
    group.add_argument("--import", dest="import_", metavar="FILE",
                       help="add the key in FILE to this machine's key store")
    p.set_defaults(func=cmd_key)

    p = sub.add_parser("share", help="write a copy re-keyed with a fresh pseudonym key that is not included")
    add_project_arg(p)
    p.add_argument("out", help="new project folder for the copy (OUT.mskproj)")
    p.set_defaults(func=cmd_share)


def cmd_key(args) -> int:
    with open_project(args.project) as project:
        fp = project.key_fingerprint
        legacy = bool(project.meta("secret"))
    if legacy:  # only a project opened read-only before its migration still holds it
        print("pseudonym key: still inside the project (open it writable once to move it out)")
        return 0
    if not fp:
        raise ValueError(f"{args.project}: this project names no pseudonym key")
    if args.export:
        print(f"exported key {fp} to {keys.export_key(fp, args.export)}")
        return 0
    if args.import_:
        keys.import_key(args.import_, expected_fp=fp)
        print(f"imported key {fp} into {keys.key_path(fp)}")
        return 0
    state = "present" if keys.has_key(fp) else "MISSING (imports refused; get it with --import FILE)"
    print(f"fingerprint {fp}\nkey file    {keys.key_path(fp)}: {state}")
    return 0


def cmd_share(args) -> int:
    from mskstudio.io.share import share_copy

    with open_project(args.project) as project:
        result = share_copy(project, args.out)
    print(f"wrote {result['path']}: {result['patients']} patients, {result['images']} images re-keyed "
          f"(key {result['key_fingerprint']} not kept: the copy cannot be extended by imports)")
    return 0
