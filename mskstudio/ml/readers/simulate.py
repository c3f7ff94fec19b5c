"""Simulated readers for tests, benchmarks and demos: answers with known error rates.

A reader with error rate e in an arm misreads exactly round(e * n) of that arm's n
cases, chosen at random (seeded), answering one of the other classes at random; the
other cases are answered correctly.  So the true accuracy of each simulated reader
is known exactly, and an analysis must recover it within its interval.  Answers go
through ``ReadingSession`` (the same path as the reading window), washout ignored.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from mskstudio.ml.readers.session import ReadingSession

if TYPE_CHECKING:
    from mskstudio.store import Project


def simulate_reads(project: Project, study: str | int, error_rates: dict[str, float | dict[str, float]], *,
                   seed: int = 0, seconds: float = 20.0) -> int:
    """Answer every unread case of each reader; ``error_rates[reader]`` is one rate or
    {arm kind: rate}.  Returns the number of reads written."""
    from mskstudio.ml.readers.analysis import study_frame

    _, info = study_frame(project, study)
    truth = info["truth"]
    n_classes = len(info["classes"])
    far = lambda: datetime.now(UTC) + timedelta(days=3650)  # noqa: E731  (washout passed)
    written = 0
    for reader, rates in error_rates.items():
        session = ReadingSession(project, study, reader, now=far)
        rng = np.random.default_rng([seed, zlib.crc32(reader.encode())])
        while not session.done:
            arm = session.current().arm
            rate = rates.get(arm, 0.0) if isinstance(rates, dict) else float(rates)
            n = session.remaining
            wrong = set(rng.choice(n, size=int(round(rate * n)), replace=False).tolist())
            for k in range(n):
                case = session.current()
                answer = truth[case.image_id]
                if k in wrong:
                    answer = int(rng.choice([c for c in range(n_classes) if c != answer]))
                session.answer(answer + 1, seconds=float(rng.gamma(4.0, seconds / 4.0)),
                               confidence=float(rng.uniform(0.3, 1.0)))
                written += 1
    return written
