"""The classifier's per-epoch checkpoint, written while the next epoch trains.

A resnet18 checkpoint (weights, AdamW moments, the folds done) is ~140 MB: hashing, writing
and fsyncing it took ~0.9 s of wall time per epoch on the 2-core bench box, half of it off
the CPU (issue 29: the classifier epoch at 0.53x the bare torch loop).  Here the state is
serialised at the end of the epoch, on the job's thread (a consistent copy: the optimiser
changes its tensors in place next epoch), and a worker thread writes and fsyncs the blob.
The run's pointer to it is committed on the job's thread, at the next batch after the
write finished, and only then are the epoch's figures reported.  So the invariants of the
synchronous version hold: no committed row names a blob not on disk, and no epoch's
figures are reported before its checkpoint is the run's (a kill in between makes the
resumed run train that epoch again, as before).  At most one write is in flight.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mskstudio.store import Project


class CheckpointWriter:
    """``writer(state, task, fold)`` checkpoints synchronously (between folds);
    ``writer.for_fold(task, fold)`` is the per-epoch saver ``train_fold`` calls."""

    def __init__(self, project: Project, run_id: int, make_obj: Callable[[dict | None, str, int], dict]):
        self.project, self.run_id, self.make_obj = project, run_id, make_obj
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[Future, Callable[[], None] | None] | None = None

    def _serialise(self, state, task, fold) -> memoryview:
        import torch

        buf = io.BytesIO()
        torch.save(self.make_obj(state, task, fold), buf)
        return buf.getbuffer()  # the buffer's own memory, no copy

    def __call__(self, state: dict | None, task: str, fold: int) -> None:
        self.flush()
        sha = self.project.blobs.put_chunks([self._serialise(state, task, fold)])
        self.project.models.set_checkpoint(self.run_id, sha)

    def submit(self, state: dict, task: str, fold: int, after: Callable[[], None] | None = None) -> None:
        """Serialise now, write on the worker thread; ``after`` runs once the run names it."""
        self.flush()
        data = self._serialise(state, task, fold)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="checkpoint")
        # hashlib, write and fsync release the GIL: the write overlaps the next epoch's batches.
        self._pending = (self._pool.submit(self.project.blobs.put_chunks, [data]), after)

    def poll(self) -> None:
        """Commit the written checkpoint (and report its epoch) if the write has finished."""
        if self._pending is not None and self._pending[0].done():
            self._finish()

    def flush(self) -> None:
        """Wait for the write in flight, commit it, report its epoch."""
        if self._pending is not None:
            self._finish()

    def _finish(self) -> None:
        future, after = self._pending
        self._pending = None
        sha = future.result()  # a failed write (disk full) fails the job here
        self.project.models.set_checkpoint(self.run_id, sha)
        if after is not None:
            after()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def for_fold(self, task: str, fold: int) -> FoldSaver:
        return FoldSaver(self, task, fold)


class FoldSaver:
    """The saver of one fold: ``saver(state, after)``, ``poll()`` per batch, ``flush()`` at the end."""

    def __init__(self, writer: CheckpointWriter, task: str, fold: int):
        self.writer, self.task, self.fold = writer, task, fold

    def __call__(self, state: dict, after: Callable[[], None] | None = None) -> None:
        self.writer.submit(state, self.task, self.fold, after)

    def poll(self) -> None:
        self.writer.poll()

    def flush(self) -> None:
        self.writer.flush()


class ImmediateSaver:
    """A plain ``save(state)`` callable (tests, the other ranks of a DDP run) as a saver."""

    def __init__(self, save: Callable[[dict], Any]):
        self.save = save

    def __call__(self, state: dict, after: Callable[[], None] | None = None) -> None:
        self.save(state)
        if after is not None:
            after()

    def poll(self) -> None:
        pass

    def flush(self) -> None:
        pass
