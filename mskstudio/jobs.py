"""Job context: how long-running work reports progress and learns it was cancelled.

A job is a plain function ``run_x(project, params, ctx) -> result``.  It calls
``ctx.progress(fraction, message)`` now and then, ``ctx.metric(name, value, step)``
for curves, and ``ctx.check_cancelled()`` at every batch.  The same function runs
from the CLI (``run_sync`` draws a progress bar), from tests and from the GUI runner,
which only differ in the *sink* that receives the reports.

``ctx.sub(a, b)`` hands a part of the job to a helper: the helper reports 0..1 and
the parent sees a..b, so nested steps never have to know where they sit.

``JobParams`` is the base of every job kind's parameter object (see ``ml/params.py``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self


class Cancelled(Exception):
    """Raised inside a job by ``check_cancelled`` once a cancel was requested."""


class JobSink(Protocol):
    def on_progress(self, fraction: float, message: str, eta_s: float | None) -> None: ...
    def on_metric(self, name: str, value: float, step: int) -> None: ...
    def on_log(self, message: str) -> None: ...


class _NullSink:
    def on_progress(self, fraction: float, message: str, eta_s: float | None) -> None:
        pass

    def on_metric(self, name: str, value: float, step: int) -> None:
        pass

    def on_log(self, message: str) -> None:
        pass


@dataclass
class CancelToken:
    """Shared between the job and whoever may cancel it (GUI thread, Ctrl-C handler)."""

    _event: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class EtaEstimator:
    """ETA from the average rate since the first progress report (robust to a slow start-up)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._t0: float | None = None
        self._f0 = 0.0

    def update(self, fraction: float) -> float | None:
        now = self._clock()
        if self._t0 is None:
            self._t0, self._f0 = now, fraction
            return None
        done = fraction - self._f0
        if done <= 1e-6:
            return None
        rate = done / max(now - self._t0, 1e-9)
        return max(0.0, (1.0 - fraction) / rate)


class JobContext:
    """Progress, metrics and cancellation for one running job (or a sub-range of it)."""

    def __init__(
        self,
        sink: JobSink | None = None,
        token: CancelToken | None = None,
        *,
        lo: float = 0.0,
        hi: float = 1.0,
        _root: JobContext | None = None,
        job_id: int | None = None,
    ):
        self.sink = sink or _NullSink()
        self.token = token or CancelToken()
        self.lo, self.hi = lo, hi
        self._root = _root
        # The jobs-table row this context reports for (None when called directly).
        self.job_id = job_id if _root is None else _root.job_id
        self._eta = EtaEstimator() if _root is None else None
        self.last_fraction = 0.0
        self.last_message = ""

    @classmethod
    def null(cls) -> JobContext:
        """A context that reports nowhere and is never cancelled (for plain calls)."""
        return cls()

    @property
    def root(self) -> JobContext:
        return self._root or self

    def progress(self, fraction: float, message: str = "") -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        absolute = self.lo + (self.hi - self.lo) * fraction
        root = self.root
        # Progress never runs backwards in the bar even if a sub-step re-reports.
        absolute = max(absolute, root.last_fraction)
        root.last_fraction = absolute
        if message:
            root.last_message = message
        eta = root._eta.update(absolute) if root._eta else None
        root.sink.on_progress(absolute, root.last_message, eta)

    def metric(self, name: str, value: float, step: int = 0) -> None:
        self.root.sink.on_metric(name, float(value), int(step))

    def log(self, message: str) -> None:
        self.root.sink.on_log(message)

    def check_cancelled(self) -> None:
        if self.token.cancelled:
            raise Cancelled()

    @property
    def cancelled(self) -> bool:
        return self.token.cancelled

    def sub(self, a: float, b: float) -> JobContext:
        """A child context whose 0..1 maps onto this context's a..b."""
        if not 0.0 <= a <= b <= 1.0:
            raise ValueError(f"sub-range must satisfy 0 <= a <= b <= 1, got {a}, {b}")
        span = self.hi - self.lo
        return JobContext(
            self.sink, self.token, lo=self.lo + span * a, hi=self.lo + span * b, _root=self.root
        )

    def steps(self, items: list[Any] | range, message: str = "") -> Any:
        """Iterate over items, checking cancel before and reporting progress after each."""
        n = len(items)
        for i, item in enumerate(items):
            self.check_cancelled()
            yield item
            self.progress((i + 1) / max(n, 1), message.format(i=i + 1, n=n) if message else "")


class RecordingSink:
    """Keeps every report in memory; used by tests and by the subprocess JSON-lines bridge."""

    def __init__(self) -> None:
        self.progress: list[tuple[float, str, float | None]] = []
        self.metrics: list[tuple[str, float, int]] = []
        self.logs: list[str] = []

    def on_progress(self, fraction: float, message: str, eta_s: float | None) -> None:
        self.progress.append((fraction, message, eta_s))

    def on_metric(self, name: str, value: float, step: int) -> None:
        self.metrics.append((name, value, step))

    def on_log(self, message: str) -> None:
        self.logs.append(message)


# ---- job parameters -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class JobParams:
    """A job kind's parameters: defaults, ``problems(project)`` in plain words, JSON with the
    old names of stored jobs accepted (``RENAMED``).  Subclasses live beside their feature
    (``ml/<feature>/params.py``, ``io/params.py``) and ``jobrun.JOB_PARAMS`` names them."""

    KIND: ClassVar[str] = ""
    RENAMED: ClassVar[dict[str, str]] = {}
    JSON_NAMES: ClassVar[dict[str, str]] = {}  # field -> JSON key where the key is no Python name

    resume_of: int | None = None  # set by ``jobs.resubmit``: the interrupted job this one continues

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Self:
        """From a job's params dict: None means the default; old names are accepted."""
        data = {k: v for k, v in (data or {}).items() if v is not None}
        for field_name, key in cls.JSON_NAMES.items():
            if key in data:
                data[field_name] = data.pop(key)
        for old, new in cls.RENAMED.items():
            if old in data:
                data.setdefault(new, data.pop(old))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.KIND}: unknown parameter{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["resume_of"] is None:
            del data["resume_of"]
        return {self.JSON_NAMES.get(k, k): v for k, v in data.items()}

    def problems(self, project: Any) -> list[str]:  # a store.Project (the store sits above this module)
        return []

    def check(self, project: Any) -> Self:
        """Raise the problems as one line (a ValueError the CLI prints without a traceback)."""
        problems = self.problems(project)
        if problems:
            raise ValueError(f"{self.KIND}: " + " ".join(problems))
        return self
