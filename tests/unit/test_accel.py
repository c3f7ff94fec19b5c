"""GPU readiness code paths, exercised on the CPU: channels-last, bfloat16 autocast, the
torch.compile fallback and the out-of-memory message (with a simulated OutOfMemoryError)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mskstudio.ml.scale import accel as A  # noqa: E402

CPU = torch.device("cpu")


def test_defaults_follow_the_device_and_env_overrides(monkeypatch):
    for var in (A.AMP_ENV, A.CHANNELS_LAST_ENV, A.COMPILE_ENV):
        monkeypatch.delenv(var, raising=False)
    acc = A.accel_for(CPU)
    assert acc.amp is None and not acc.channels_last and not acc.pin_memory
    monkeypatch.setenv(A.AMP_ENV, "bf16")
    monkeypatch.setenv(A.CHANNELS_LAST_ENV, "1")
    acc = A.accel_for(CPU)
    assert acc.amp == "bf16" and acc.channels_last and acc.dtype is torch.bfloat16
    assert not acc.scaler().is_enabled()  # bfloat16 needs no loss scaling
    monkeypatch.setenv(A.AMP_ENV, "fp16")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        A.accel_for(CPU)
    monkeypatch.setenv(A.AMP_ENV, "fp8")
    with pytest.raises(ValueError, match="off, bf16 or fp16"):
        A.accel_for(CPU)


def test_channels_last_and_bf16_on_cpu_give_the_same_answer():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 4, 3)).eval()
    x = torch.rand(2, 1, 16, 16)
    ref = net(x)
    acc = A.Accel(CPU, "bf16", True)
    fast = acc.module(net)
    xb = acc.batch(x)
    assert xb.is_contiguous(memory_format=torch.channels_last)
    assert fast[0].weight.is_contiguous(memory_format=torch.channels_last)
    with acc.autocast():
        out = fast(xb)
    assert out.dtype is torch.bfloat16
    assert torch.allclose(out.float(), ref, atol=0.05, rtol=0.05)  # bfloat16 keeps ~3 digits
    with A.Accel(CPU, None, True).autocast():
        assert torch.allclose(fast(xb), ref, atol=1e-5)  # channels-last alone: the same numbers


def test_compile_falls_back_cleanly(monkeypatch):
    net = torch.nn.Linear(3, 2)
    x = torch.ones(1, 3)
    logs: list[str] = []
    assert A.maybe_compile(net, logs.append, enabled=False) is net

    def broken_compile(model, **kw):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken_compile)
    assert A.maybe_compile(net, logs.append, enabled=True) is net
    assert "no compiler here" in logs[-1]

    calls = {"n": 0}

    def lazy_failure(model, **kw):  # compiles, then fails at the first call (where dynamo works)
        def run(*a):
            calls["n"] += 1
            raise RuntimeError("inductor: unsupported op")
        return run

    monkeypatch.setattr(torch, "compile", lazy_failure)
    wrapped = A.maybe_compile(net, logs.append, enabled=True)
    assert torch.equal(wrapped(x), net(x)) and "unsupported op" in logs[-1]
    assert torch.equal(wrapped(x), net(x)) and calls["n"] == 1  # eager for good
    assert wrapped.weight is net.weight  # the same parameters for the optimiser


def test_batch_size_that_fits():
    gib = 2**30
    assert A.fitting_batch_size(64, 10 * gib, 16 * gib) == 32   # capped at half
    assert A.fitting_batch_size(64, 60 * gib, 16 * gib) == 8    # 64 * 0.8 * 16 / 60 = 13.6 -> 8
    assert A.fitting_batch_size(1, 60 * gib, 16 * gib) == 1
    assert A.fitting_batch_size(48, 0, 0) == 16                 # no statistics: half, a power of two
    msg = A.oom_message(64, "cuda:0", peak=60 * gib, total=16 * gib)
    assert "batch size 64" in msg and "--batch-size 8" in msg and "16.0 GiB" in msg


def test_a_simulated_cuda_oom_in_a_trainer_becomes_one_line(tmp_path, monkeypatch):
    from mskstudio.jobs import JobContext
    from mskstudio.ml.cluster.deepcluster import run_cluster
    from mskstudio.ml.synthetic import add_synthetic_images
    from mskstudio.store import Project

    with Project.create(tmp_path / "oom.mskproj") as project:
        add_synthetic_images(project, 16, seed=0, size=32, thumbnails=False)
        import mskstudio.ml.models as models

        real = models.normalise
        state = {"training": False}

        def normalise(x):
            if state["training"] and x.shape[0] == 8:  # the training batch, not feature extraction
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return real(x)

        monkeypatch.setattr(models, "normalise", normalise)
        monkeypatch.setattr(A, "_memory", lambda device: (12 * 2**30, 16 * 2**30))
        import mskstudio.ml.cluster.epochs as E

        # Simplest hook into "training started": the sampler is built right before the loop.
        real_sampler = E.UniformClusterSampler

        def sampler(*a, **k):
            state["training"] = True
            return real_sampler(*a, **k)

        monkeypatch.setattr(E, "UniformClusterSampler", sampler)
        with pytest.raises(A.OutOfMemory) as err:
            run_cluster(project, {"k": 2, "input_size": 32, "batch_size": 8, "epochs": 1, "init": "scratch",
                                  "device": "cpu", "head_warmup_steps": 0}, JobContext.null())
        assert str(err.value).startswith("cpu ran out of memory at batch size 8")
        assert "--batch-size 4" in str(err.value)
        (run,) = project.models.list("deepcluster")
        assert run["status"] == "error"


def test_trainers_run_with_channels_last_and_bf16_on_cpu(tmp_path, monkeypatch):
    """The CUDA code path (channels-last activations, bfloat16 autocast) of DeepCluster and the
    segmenter, forced on the CPU: they train and give finite figures."""
    from mskstudio.jobs import JobContext
    from mskstudio.ml.cluster.deepcluster import run_cluster
    from mskstudio.ml.synthetic import add_synthetic_images
    from mskstudio.store import Project

    monkeypatch.setenv(A.AMP_ENV, "bf16")
    monkeypatch.setenv(A.CHANNELS_LAST_ENV, "1")
    with Project.create(tmp_path / "cl.mskproj") as project:
        add_synthetic_images(project, 16, seed=0, size=32, thumbnails=False)
        out = run_cluster(project, {"k": 2, "input_size": 32, "batch_size": 8, "epochs": 1, "init": "scratch",
                                    "device": "cpu"}, JobContext.null())
        (run,) = project.models.list("deepcluster")
        assert run["status"] == "done" and np.isfinite(project.models.metrics(run["id"])["loss"])
        assert out["cluster_run_id"]
