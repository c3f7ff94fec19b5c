"""What a job has finished so far, so that resuming it after a kill skips that work.

Jobs that go over many images and write one result per image or per chunk of images
(predictions, embeddings, Grad-CAM maps, export files, detections) record each finished
piece here *after* its result is stored.  ``mskstudio jobs P --resume JOB`` and the app's
Resume submit a new job with ``resume_of`` = the killed one; that job opens the same
marks (filed under the first job of the chain, ``jobs.resume_root``) and does only what
is not marked.  A kill between storing a piece and marking it costs that piece once
more; every piece is written so that doing it twice gives the same result.

The marks live in the project's ``cache/resume/`` folder: derived state like the rest of
``cache/``, so deleting it only means a resume starts from the beginning.  A job that
finishes deletes its marks.  Without a job (a direct call from a test or a script),
marks are kept in memory only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mskstudio.store import Project


def chunk_size(n: int, *, lo: int, hi: int, parts: int = 10) -> int:
    """Items per stored piece: about ``parts`` pieces per job (a kill costs at most a tenth
    of the work), never fewer than ``lo`` (each piece costs a commit or a file write) nor
    more than ``hi``."""
    return max(lo, min(hi, -(-int(n) // parts)))


class ResumeMarks:
    """Finished pieces of one job chain: ``key -> record`` (any JSON), plus a ``signature``
    of the inputs, so marks of a job with other inputs are never trusted."""

    def __init__(self, path: Path | None, signature: Any = None):
        self.path, self.signature = path, signature
        self.done: dict[str, Any] = {}
        self.resumed = False
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = {}
            if data.get("signature") == json.loads(json.dumps(signature, default=str)):
                self.done = dict(data.get("done", {}))
                self.resumed = bool(self.done)

    @classmethod
    def for_job(cls, project: Project, job_id: int | None, params: dict[str, Any] | None,
                signature: Any = None) -> ResumeMarks:
        """The marks of job ``job_id``: those of the job it resumes when ``params`` has
        ``resume_of``, else fresh ones (earlier marks of the same chain are dropped)."""
        if job_id is None:
            return cls(None, signature)
        root = project.jobs.resume_root(int(job_id))
        path = project.cache_path("resume", f"job{root}.json")
        if not (params or {}).get("resume_of"):
            path.unlink(missing_ok=True)
        return cls(path, signature)

    def __contains__(self, key: Any) -> bool:
        return str(key) in self.done

    def get(self, key: Any, default: Any = None) -> Any:
        return self.done.get(str(key), default)

    def add(self, records: dict[Any, Any], *, write: bool = True) -> None:
        """Mark pieces finished (their results already stored) and write the marks
        (``write=False``: later, with the next ``add`` or ``flush``, for many small pieces)."""
        self.done.update({str(k): v for k, v in records.items()})
        if write:
            self.flush()

    def flush(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"signature": self.signature, "done": self.done}, default=str))
        tmp.replace(self.path)

    def finish(self) -> None:
        """The job is done: nothing is left to resume (nor a temporary file a kill left)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            for tmp in self.path.parent.glob(f"{self.path.stem}.tmp*"):
                tmp.unlink(missing_ok=True)
