"""The whole human-in-the-loop cycle on the phantom demo, as one job (``demo-loop``).

cluster now → a simulated radiologist labels whole clusters with the Clusters board's own
store actions (label, discard, split) → a small region classifier → predictions and cached
Grad-CAM heatmaps → embeddings for similar cases (precision@k against a pixel baseline) →
the box-prompted segmenter trained from the phantom surgeons' boxes and masks → ONNX export
with a parity check.  Each step's figures carry their n and a 95 % CI where they are
estimates, and its wall-clock time.  ``mskstudio demo`` runs it when there is no display, so
a newcomer without a screen sees the loop, not only the data; the GUI then opens on a project
where every workspace has something to show.

The radiologist is simulated from the phantoms' hidden truth (``truth:region``): for each
cluster it reads the members' true regions as a person reads the montage, splits a cluster
that is less than ``purity`` one region, discards clusters of non-MSK films (chest, abdomen,
screenshots, blanks) and labels the rest with the majority region.  The truth set itself is
only ever used to score.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mskstudio.domain import TRUTH_PREFIX
from mskstudio.jobs import JobContext
from mskstudio.ml.cluster.split import split_cluster
from mskstudio.ml.evaluate.metrics import proportion
from mskstudio.store import Project

NON_MSK = ("chest", "abdomen", "screenshot", "blank")  # io/phantoms.py: films a radiologist discards
DEFAULTS: dict[str, Any] = {
    "label_set": "region (from clusters)",
    "purity": 0.7,             # the radiologist splits a cluster less pure than this, once
    "cluster_input_size": 128,
    "k": None,                 # default: one cluster per ~15 images, 8 to 40 (a board's worth to label)
    # smallcnn (its last block sees the whole film) for 20 epochs without augmentation: on the
    # 600-image demo, hold-out accuracy 0.882 [0.812, 0.929] (n=119) for 52 CPU s, where tinycnn
    # for 4 augmented epochs had 0.294 [0.220, 0.381]; augmentation cost CPU and, at this few
    # epochs, accuracy (tinycnn 12 epochs: 0.462 with, 0.555 without); 96 px cost 72 CPU s for 0.395.
    "train": {"arch": "smallcnn", "size": 64, "k": 2, "epochs": 20, "augment": False, "batch_size": 32,
              "lr": 3e-3, "n_boot": 200, "patience": 10},
    "explain_images": 12,      # held-out images whose Grad-CAM is cached for the Review board
    "seg": {"arch": "unet-small", "crop": 32, "epochs": 3, "samples_per_image": 3, "threads": 1},
    "seed": 0,
    "outdir": None,            # ONNX export folder (default: the project's exports/onnx)
}
WEIGHTS = {"cluster": 0.15, "label": 0.05, "train": 0.3, "predict": 0.15, "embed": 0.1, "seg": 0.2,
           "onnx": 0.05}


def simulated_radiologist(project: Project, run_id: int, label_set: str, *, purity: float = 0.7,
                          seed: int = 0) -> dict[str, Any]:
    """Label every cluster of ``run_id`` through ``project.clusters`` (the board's actions)."""
    truth_ls = project.labels.find_label_set(TRUTH_PREFIX + "region")
    if truth_ls is None:
        raise ValueError("the demo loop needs the phantoms' truth:region set (mskstudio demo builds it)")
    truth = project.labels.effective(truth_ls)
    names = {r.id: r.name for r in project.labels.classes(truth_ls)}
    ls = project.labels.label_set(label_set)
    actions: Counter = Counter()
    queue = [(int(c["id"]), 0) for c in project.clusters.clusters(run_id, order="size")]
    while queue:
        cid, depth = queue.pop(0)
        members = project.clusters.member_ids(cid)
        votes = Counter(names[truth[i]] for i in members if i in truth)
        if not votes:
            continue
        region, n = votes.most_common(1)[0]
        if n / len(members) < purity and depth == 0 and len(members) >= 4:
            rec = split_cluster(project, cid, 2, seed=seed)
            actions["split"] += 1
            queue += [(cid, 1)] + [(c, 1) for c in rec["created"]]
        elif region in NON_MSK:
            project.clusters.discard([cid], ls)
            actions["discard"] += 1
        else:
            project.clusters.label_cluster([cid], ls, region)
            actions["label"] += 1
    given = project.labels.effective(ls)
    given_names = {r.id: r.name for r in project.labels.classes(ls)}
    reject = {r.id for r in project.labels.classes(ls) if r.is_reject}

    def agrees(i: int) -> bool:
        true = names[truth[i]]
        return true in NON_MSK if given[i] in reject else given_names[given[i]] == true

    scored = [i for i in given if i in truth]
    correct = sum(agrees(i) for i in scored)
    return {"actions": dict(actions), "labelled": len(given), "accuracy": proportion(correct, len(scored)),
            "classes": len(set(given.values()))}


def _fmt_p(p: dict[str, Any]) -> str:
    lo, hi = p["ci"]
    return f"{p['value']:.3f} (95% CI {lo:.3f}–{hi:.3f}, n={p['n']})"


def _fmt_mean(m: dict[str, Any], n: int | None = None) -> str:
    lo, hi = m.get("ci95") or (m.get("lo"), m.get("hi"))
    n = m.get("n", n)
    return f"{m['mean']:.3f} (95% CI {lo:.3f}–{hi:.3f}{f', n={n}' if n is not None else ''})"


def run_demo_loop(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Job ``demo-loop``; returns ``steps``: [{step, seconds, figures, ...}] in order."""
    import torch

    from mskstudio.ml.classify.predict import run_predict
    from mskstudio.ml.classify.train import run_train
    from mskstudio.ml.cluster.deepcluster import run_cluster
    from mskstudio.ml.deploy.onnx_export import run_export_onnx
    from mskstudio.ml.explain.gradcam import run_explain
    from mskstudio.ml.retrieve.embeddings import rep_key, run_embed
    from mskstudio.ml.retrieve.evaluate import run_eval_retrieval
    from mskstudio.ml.segment.train_box import run_train_box_seg

    p = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
    seed = int(p["seed"])
    torch.manual_seed(seed)
    steps: list[dict[str, Any]] = []
    at = [0.0]

    def part(name: str) -> JobContext:
        a = at[0]
        at[0] = min(1.0, a + WEIGHTS[name])
        ctx.check_cancelled()
        return ctx.sub(a, at[0])

    def done(name: str, t0: float, figures: str, **extra) -> None:
        step = {"step": name, "seconds": round(time.monotonic() - t0, 1), "figures": figures, **extra}
        steps.append(step)
        ctx.log(f"{name}: {figures} [{step['seconds']} s]")
        ctx.metric(f"{name}.seconds", step["seconds"])

    t0 = time.monotonic()
    n_images = project.images.count()
    k = int(p["k"] or min(40, max(8, n_images // 15)))
    c = run_cluster(project, {"mode": "fast", "input_size": int(p["cluster_input_size"]), "seed": seed,
                              "k": min(k, n_images), "label_set": p["label_set"]}, part("cluster"))
    nmi = c["metrics"].get("truth", {}).get(TRUTH_PREFIX + "region", {})
    done("cluster now", t0, f"{c['n']} images in {c['k']} clusters"
         + (f"; NMI vs true region {nmi['nmi']:.3f}, purity {nmi['purity']:.3f} (n={nmi['n']})" if nmi else ""),
         cluster_run_id=c["cluster_run_id"])

    t0 = time.monotonic()
    with project.cluster_edits.from_origin("demo"):  # journalled as the demo's, undoable like any edit
        r = simulated_radiologist(project, c["cluster_run_id"], p["label_set"], purity=float(p["purity"]),
                                  seed=seed)
    part("label")
    acts = ", ".join(f"{n} {a}" for a, n in sorted(r["actions"].items()))
    done("label clusters", t0, f"{r['labelled']} images labelled in {r['classes']} classes by {acts}; "
         f"agreement with truth {_fmt_p(r['accuracy'])}", **r)

    t0 = time.monotonic()
    tr = run_train(project, {"label_set": p["label_set"], "seed": seed, **p["train"]}, part("train"))
    model_run = tr["model_run_id"]
    hold = (project.models.metrics(model_run) or {}).get("holdout") or {}
    acc = hold.get("accuracy") or {}
    acc_text = (f"hold-out accuracy {acc['value']:.3f} (95% CI {acc['ci'][0]:.3f}–{acc['ci'][1]:.3f}, "
                f"n={hold.get('n')})" if acc.get("ci") else f"hold-out accuracy {tr['holdout_accuracy']}")
    done("train classifier", t0, f"{p['train']['arch']} {p['train']['size']} px, {p['train']['k']} folds, "
         f"{len(tr['classes'])} classes; {acc_text}; majority-class rate {tr['majority_rate'] or 0:.3f}",
         model_run_id=model_run)

    t0 = time.monotonic()
    sub = part("predict")
    pr = run_predict(project, {"model_run_id": model_run}, sub.sub(0.0, 0.6))
    split = project.models.get(model_run)["split"]
    test_ids = sorted(int(i) for i in (json.loads(split) or {}).get("test", []))[: int(p["explain_images"])]
    ex = run_explain(project, {"model_run_id": model_run, "image_ids": test_ids}, sub.sub(0.6, 1.0))
    done("predict + Grad-CAM", t0, f"{pr['predicted']} images predicted ({pr['rejected']} rejected as "
         f"out of distribution); "
         f"{ex['images']} held-out Grad-CAM heatmaps cached for the Review board", heatmaps=ex["images"])

    t0 = time.monotonic()
    sub = part("embed")
    em = run_embed(project, {"run_id": model_run}, sub.sub(0.0, 0.5))
    ev = run_eval_retrieval(project, {"run_id": model_run, "label_set": p["label_set"], "ks": [5],
                                      "shuffles": 3, "seed": seed}, sub.sub(0.5, 1.0))
    ours = ev["summary"][rep_key(model_run)]["k5"]["precision"]
    base = ev["summary"]["baseline_" + rep_key("pixels")]["k5"]["precision"]
    done("similar cases", t0, f"{em['n']} embeddings (dim {em['dim']}); precision@5 {_fmt_mean(ours)} "
         f"vs pixels {_fmt_mean(base)} (queries: held-out patients, 3 shuffles of {ev['n_patients']} "
         f"patients, {ev['n_images']} images)")

    t0 = time.monotonic()
    seg = run_train_box_seg(project, {"seed": seed, **p["seg"]}, part("seg"))
    test = (project.models.metrics(seg["run_id"]) or {}).get("test") or {}
    dice = test.get("model_dice")
    fill = test.get("box_dice") or test.get("box_iou")
    done("box segmenter", t0, f"held-out Dice {_fmt_mean(dice) if dice else seg['test_dice']}"
         + (f" vs filled box {_fmt_mean(fill)}" if fill else "")
         + f"; {seg['n_train']} training lesions", box_run_id=seg["run_id"])

    t0 = time.monotonic()
    outdir = Path(p["outdir"]) if p["outdir"] else project.root / "exports" / "onnx"
    ox = run_export_onnx(project, {"model_run_id": model_run, "outdir": str(outdir)}, part("onnx"))
    parity = [f.get("parity", {}) for f in ox.get("files", [])]
    worst = max((q.get("max_abs_diff", 0.0) for q in parity), default=float("nan"))
    n_par = sum(q.get("n", 0) for q in parity)
    done("ONNX export", t0, f"{len(parity)} model(s) to {outdir}; ONNX Runtime vs PyTorch max |Δ| "
         f"{worst:.2e} on n={n_par} images")

    total = round(sum(s["seconds"] for s in steps), 1)
    ctx.progress(1.0, f"demo loop done in {total} s")
    return {"steps": steps, "seconds": total, "model_run_id": model_run,
            "cluster_run_id": c["cluster_run_id"], "label_set": p["label_set"]}
