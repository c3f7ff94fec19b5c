"""Job kinds used only by the GUI tests (registered in JOB_KINDS by the fixtures/job host)."""

from __future__ import annotations

import time

KINDS = {
    "gui-test-sleep": "gui_testjobs:run_sleep",
    "gui-test-fail": "gui_testjobs:run_fail",
    "gui-test-busy": "gui_testjobs:run_busy",
    "gui-test-epochs": "gui_testjobs:run_epochs",
}


def run_sleep(project, params, ctx):
    n = int(params.get("steps", 50))
    for i in range(n):
        ctx.check_cancelled()
        time.sleep(float(params.get("step_s", 0.05)))
        ctx.progress((i + 1) / n, f"step {i + 1}/{n}")
        if i % 10 == 0:
            ctx.log(f"at step {i}")
    ctx.metric("loss", 0.5, 1)
    return {"steps": n}


def epoch_figures(epoch: int) -> dict[str, float]:
    """What ``run_epochs`` reports at ``epoch``: two folds' losses and one accuracy."""
    return {"fold0/val_loss": 1.0 / (epoch + 1), "fold1/val_loss": 1.2 / (epoch + 1),
            "fold0/val_acc": 0.5 + 0.05 * epoch}


def run_epochs(project, params, ctx):
    """A training-like job: per-epoch metrics, then a wait for the test to watch them."""
    n = int(params.get("epochs", 4))
    for epoch in range(n):
        ctx.check_cancelled()
        for name, value in epoch_figures(epoch).items():
            ctx.metric(name, value, epoch)
        ctx.progress((epoch + 1) / n, f"epoch {epoch + 1}/{n}")
        time.sleep(float(params.get("epoch_s", 0.3)))
    return {"epochs": n}


def run_fail(project, params, ctx):
    ctx.progress(0.3, "about to fail")
    raise RuntimeError("the phantom detector exploded")


def run_busy(project, params, ctx):
    """CPU-heavy loop (for the event-loop lag benchmark)."""
    import numpy as np

    end = time.monotonic() + float(params.get("seconds", 3.0))
    a = np.random.default_rng(0).random((400, 400))
    i = 0
    while time.monotonic() < end:
        ctx.check_cancelled()
        a = np.tanh(a @ a.T / 400.0)
        i += 1
        ctx.progress(min(0.99, 1 - (end - time.monotonic()) / float(params.get("seconds", 3.0))), f"iter {i}")
    return {"iterations": i}
