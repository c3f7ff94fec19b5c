"""Fuzz the DICOM importer with seeded mutations of real files (``mutate_dicom``).

Run: python tests/fuzz/fuzz_import.py --n 10000 [--seed 0] [--batch 500] [--keep DIR]

Every batch of mutants is imported into a fresh project (so no mutant is skipped as a
duplicate of an earlier one) through the real job (``run_import``: worker processes,
per-file time limit).  Checked per batch: the import returns (no exception escapes),
every file is accounted for (imported + duplicates + skipped + failed = seen), every
failure has a one-line reason and a row in ``import_failures``, the database passes
``integrity_check``.  Prints the counts, the crashes (a worker killed by a signal) and
the hangs (time limit) found, and the most frequent failure reasons.  With ``--keep``
the inputs that crashed or hung a worker are saved there to reproduce.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]  # this checkout's mskstudio, not an installed one

from mutate_dicom import mutate, seed_files  # noqa: E402

from mskstudio.io.importer import run_import  # noqa: E402
from mskstudio.jobs import JobContext  # noqa: E402
from mskstudio.store import Project  # noqa: E402


class FuzzFailure(AssertionError):
    pass


def phantom_seeds(folder: Path, n: int = 6) -> list[Path]:
    from mskstudio.io.phantoms import generate_archive

    manifest = generate_archive(folder, n_images=n, seed=11, size="small", workers=1)
    return sorted((manifest.parent / "dicom").rglob("*.dcm"))[:n]


def run_batch(cases: list[tuple[str, str, bytes]], work: Path, *, workers: int, time_limit_s: float) -> dict:
    """Import one batch of mutants into a fresh project; raise FuzzFailure on a broken invariant."""
    folder = work / "in"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    origin = {}
    for i, (seed, kinds, data) in enumerate(cases):
        path = folder / f"{i:05d}.dcm"
        path.write_bytes(data)
        origin[str(path)] = (seed, kinds)
    root = work / "p.mskproj"
    shutil.rmtree(root, ignore_errors=True)
    with Project.create(root) as project:
        job = project.jobs.submit("import", {})
        try:
            result = run_import(project, {"paths": [str(folder)], "workers": workers,
                                          "file_time_limit_s": time_limit_s}, JobContext(job_id=job))
        except BaseException as exc:
            raise FuzzFailure(f"the import raised {type(exc).__name__}: {exc}") from exc
        accounted = result["imported"] + result["duplicates"] + result["non_dicom"] + result["failed"]
        if accounted != result["files_seen"] or result["files_seen"] != len(cases):
            raise FuzzFailure(f"files not accounted for: {result}")
        rows = project.jobs.failures(job)
        if len(rows) != result["failed"] + result["non_dicom"]:
            raise FuzzFailure(f"{len(rows)} failure rows for {result['failed'] + result['non_dicom']} failures")
        if any(not (r["reason"] or "").strip() for r in rows):
            raise FuzzFailure("a failure without a reason")
        if project.db.scalar("PRAGMA integrity_check") != "ok":
            raise FuzzFailure("integrity_check failed")
        return {"result": result, "failures": [(r["path"], r["reason"]) for r in rows], "origin": origin}


def fuzz(n: int, seed: int, work: Path, *, batch: int = 500, workers: int = 2, time_limit_s: float = 10.0,
         keep: Path | None = None, extra_seeds: list[Path] | None = None, log=print) -> dict:
    seeds = seed_files(extra_seeds)
    rng = random.Random(seed)
    totals = collections.Counter()
    reasons: collections.Counter = collections.Counter()
    crashes, hangs = [], []
    t0 = time.monotonic()
    done = 0
    while done < n:
        cases = [mutate(rng, seeds) for _ in range(min(batch, n - done))]
        out = run_batch(cases, work, workers=workers, time_limit_s=time_limit_s)
        r = out["result"]
        for key in ("imported", "duplicates", "non_dicom", "failed"):
            totals[key] += r[key]
        for path, reason in out["failures"]:
            short = reason.split(":")[0][:70]
            reasons[short] += 1
            kind = "crash" if "decoder crashed" in reason or "ended unexpectedly" in reason else \
                "hang" if "longer than" in reason else None
            if kind:
                (crashes if kind == "crash" else hangs).append((*out["origin"][path], reason))
                if keep:
                    keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, keep / f"{kind}-{seed}-{done}-{Path(path).name}")
        done += len(cases)
        log(f"{done}/{n} cases, {time.monotonic() - t0:.0f} s: {dict(totals)}; "
            f"crashes {len(crashes)}, hangs {len(hangs)}")
    return {"cases": done, **totals, "crashes": crashes, "hangs": hangs,
            "reasons": reasons.most_common(25), "seconds": round(time.monotonic() - t0, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per file")
    parser.add_argument("--keep", type=Path, help="save inputs that crashed or hung a worker here")
    parser.add_argument("--no-phantoms", action="store_true", help="pydicom's files only")
    args = parser.parse_args()
    os.environ["PYTHONWARNINGS"] = "ignore"  # pydicom warns on every broken value; workers inherit this
    import warnings

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="mskfuzz-") as tmp:
        extra = [] if args.no_phantoms else phantom_seeds(Path(tmp) / "phantoms")
        out = fuzz(args.n, args.seed, Path(tmp) / "work", batch=args.batch, workers=args.workers,
                   time_limit_s=args.time_limit, keep=args.keep, extra_seeds=extra)
    print(f"\n{out['cases']} cases in {out['seconds']} s: imported {out['imported']}, "
          f"failed {out['failed']}, not DICOM {out['non_dicom']}, duplicates {out['duplicates']}")
    print(f"crashes (worker killed by a signal, contained): {len(out['crashes'])}")
    for c in out["crashes"][:20]:
        print("  ", c)
    print(f"hangs (per-file time limit, contained): {len(out['hangs'])}")
    for h in out["hangs"][:20]:
        print("  ", h)
    print("most frequent failure reasons:")
    for reason, count in out["reasons"]:
        print(f"  {count:6d}  {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
