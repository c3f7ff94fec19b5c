"""Reader-study statistics: plain functions on a reads data frame, returning data frames.

Every statistic comes from a library: Wilson intervals (statsmodels
``proportion_confint``), Cohen's and linearly weighted κ (scikit-learn
``cohen_kappa_score``), Fleiss' κ (statsmodels ``fleiss_kappa``), McNemar and
Cochran's Q (statsmodels), ROC (scikit-learn).  Only the bootstrap loops (percentile
intervals over cases, seeded) are ours.  Sensitivity and specificity are for the
``positive`` class against all others.  Group rows pool the reads of the group's
readers, so their intervals ignore that one reader's reads are correlated (say so
when reporting them).

``analyze_study`` is what the CLI, the GUI page and the evaluation report call.
"""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mskstudio.ml.readers.intervals import wilson

if TYPE_CHECKING:
    from mskstudio.store import Project


def study_frame(project: Project, study: str | int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(one row per answered read with truth and model columns, study info)."""
    from mskstudio.ml.readers.setup import truth_labels

    row = project.readers.study(study)
    if row is None:
        raise ValueError(f"reader study {study!r}: no such study")
    study_id = int(row["id"])
    class_ids = [int(c) for c in json.loads(row["classes"])]
    names = {r.id: r.name for r in project.labels.classes(row["label_set_id"])}
    keys = [names[c] for c in class_ids]
    truth = truth_labels(project, int(row["truth_label_set_id"]), keys)
    index = {c: k for k, c in enumerate(class_ids)}
    reads = [dict(r) for r in project.readers.reads(study_id)]
    df = pd.DataFrame(reads, columns=["reader", "role", "years", "arm", "arm_position", "image_id", "position",
                                      "class_id", "answer", "confidence", "seconds", "read_at"])
    df["answer_k"] = df["class_id"].map(index)
    df["truth_k"] = df["image_id"].map(truth)
    df["role"] = df["role"].fillna("unspecified")
    model = _model_outputs(project, row["model_run_id"], class_ids)
    df["model_k"] = df["image_id"].map({i: m[0] for i, m in model.items()})
    info = {"id": study_id, "name": row["name"], "classes": keys, "ordinal": bool(row["ordinal"]),
            "model_run_id": row["model_run_id"], "model": model,
            "cases": project.readers.case_images(study_id), "truth": truth,
            "boxes": bool(json.loads(row["params"] or "{}").get("boxes", False))}
    return df, info


def _model_outputs(project: Project, run_id: int | None, class_ids: list[int]) -> dict[int, tuple[int, list]]:
    """image id -> (predicted class index, probabilities in key order) of the model run."""
    if run_id is None:
        return {}
    index = {c: k for k, c in enumerate(class_ids)}
    out = {}
    for r in project.models.predictions(int(run_id)):
        probs = json.loads(r["probs"] or "{}")
        p = [float(probs.get(str(c), 0.0)) for c in class_ids]
        if r["class_id"] in index:
            out[int(r["image_id"])] = (index[r["class_id"]], p)
    return out


def _rates(truth: np.ndarray, answer: np.ndarray, positive: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": int(len(truth))}
    for name, mask, hit in (("accuracy", np.ones(len(truth), bool), answer == truth),
                            ("sensitivity", truth == positive, answer == positive),
                            ("specificity", truth != positive, answer != positive)):
        k, n = int(hit[mask].sum()), int(mask.sum())
        value, lo, hi = wilson(k, n)
        out |= {name: value, f"{name}_lo": lo, f"{name}_hi": hi, f"{name}_k": k, f"{name}_n": n}
    return out


def performance(df: pd.DataFrame, positive: int = 0) -> pd.DataFrame:
    """Accuracy, sensitivity and specificity with Wilson 95% CIs per reader, per role group
    (pooled) and for the model on the same cases, per arm."""
    rows = []
    scored = df.dropna(subset=["truth_k"])
    for arm, part in scored.groupby("arm_position", sort=True):
        kind = part["arm"].iloc[0]
        for (level, key), grp in itertools.chain(
                ((("reader", r), g) for r, g in part.groupby("reader")),
                ((("group", r), g) for r, g in part.groupby("role")),
                [(("group", "all readers"), part)]):
            rows.append({"arm_position": arm, "arm": kind, "level": level, "who": key,
                         **_rates(grp["truth_k"].to_numpy(int), grp["answer_k"].to_numpy(int), positive)})
        cases = part.drop_duplicates("image_id").dropna(subset=["model_k"])
        if len(cases):
            rows.append({"arm_position": arm, "arm": kind, "level": "model", "who": "model",
                         **_rates(cases["truth_k"].to_numpy(int), cases["model_k"].to_numpy(int), positive)})
    return pd.DataFrame(rows)


def _wide(part: pd.DataFrame) -> pd.DataFrame:
    """cases × readers matrix of answer indices (cases every reader answered)."""
    return part.pivot_table(index="image_id", columns="reader", values="answer_k", aggfunc="first").dropna()


def _boot(stat, n: int, n_boot: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        v = stat(rng.integers(0, n, n))
        if np.isfinite(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def cohen_pairs(df: pd.DataFrame, *, ordinal: bool = False, n_boot: int = 1000, seed: int = 0,
                n_classes: int | None = None) -> pd.DataFrame:
    """Cohen's κ (and linearly weighted κ for ordinal classes) per reader pair and arm,
    with percentile bootstrap CIs over cases."""
    from sklearn.metrics import cohen_kappa_score

    rows = []
    for arm, part in df.groupby("arm_position", sort=True):
        wide = _wide(part)
        k = max(n_classes or 0, int(wide.to_numpy().max()) + 1 if len(wide) else 1)
        for a, b in itertools.combinations(sorted(wide.columns), 2):
            x, y = wide[a].to_numpy(int), wide[b].to_numpy(int)
            for weights in [None, "linear"] if ordinal else [None]:
                with np.errstate(all="ignore"):
                    kappa = float(cohen_kappa_score(x, y, labels=list(range(k)), weights=weights))
                lo, hi = _percentiles(cohen_kappa_resampled(x, y, k, weights, n_boot=n_boot, seed=seed))
                rows.append({"arm_position": arm, "arm": part["arm"].iloc[0], "reader_a": a, "reader_b": b,
                             "weights": weights or "none", "n": len(x), "kappa": kappa,
                             "kappa_lo": lo, "kappa_hi": hi})
    return pd.DataFrame(rows)


def cohen_kappa_resampled(x: np.ndarray, y: np.ndarray, n_classes: int, weights: str | None, *,
                          n_boot: int, seed: int) -> np.ndarray:
    """Cohen's κ of ``n_boot`` bootstrap resamples of the cases, vectorised.

    Our own code: scikit-learn's ``cohen_kappa_score`` takes ~1-15 ms a call in input
    checks, minutes for a study's resamples.  Same formula as scikit-learn with
    ``labels=range(n_classes)`` (κ = 1 - Σ w·O / Σ w·E); the tests check resamples
    against it to 1e-9."""
    rng = np.random.default_rng(seed)
    n, k = len(x), n_classes
    idx = rng.integers(0, n, (n_boot, n))
    codes = (np.asarray(x) * k + np.asarray(y))[idx] + (np.arange(n_boot) * k * k)[:, None]
    observed = np.bincount(codes.ravel(), minlength=n_boot * k * k).reshape(n_boot, k, k).astype(float)
    expected = observed.sum(2)[:, :, None] * observed.sum(1)[:, None, :] / n
    i, j = np.indices((k, k))
    w = (i != j).astype(float) if weights is None else np.abs(i - j).astype(float)
    with np.errstate(all="ignore"):
        return 1.0 - (w * observed).sum((1, 2)) / (w * expected).sum((1, 2))


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def fleiss_groups(df: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, n_classes: int | None = None
                  ) -> pd.DataFrame:
    """Fleiss' κ per role group (and all readers) and arm, bootstrap CIs over cases."""
    rows = []
    for arm, part in df.groupby("arm_position", sort=True):
        groups = [(g, sorted(p["reader"].unique())) for g, p in part.groupby("role")]
        groups.append(("all readers", sorted(part["reader"].unique())))
        wide_all = _wide(part)
        for group, readers in groups:
            readers = [r for r in readers if r in wide_all.columns]
            if len(readers) < 2:
                continue
            m = wide_all[readers].to_numpy(int)
            k = max(n_classes or 0, int(m.max()) + 1)
            table = _rating_table(m, k)
            # resampling cases = resampling rows of the cases x categories table
            lo, hi = _boot(lambda i, t=table: _fleiss_table(t[i]), len(m), n_boot, seed)
            rows.append({"arm_position": arm, "arm": part["arm"].iloc[0], "group": group,
                         "readers": ",".join(readers), "n": len(m), "kappa": fleiss(m, k),
                         "kappa_lo": lo, "kappa_hi": hi})
    return pd.DataFrame(rows)


def fleiss(matrix: np.ndarray, n_classes: int) -> float:
    """Fleiss' κ of a cases × raters matrix of class indices (statsmodels)."""
    return _fleiss_table(_rating_table(matrix, n_classes))


def _rating_table(matrix: np.ndarray, n_classes: int) -> np.ndarray:
    from statsmodels.stats.inter_rater import aggregate_raters

    return aggregate_raters(np.asarray(matrix, int), n_cat=n_classes)[0]


def _fleiss_table(table: np.ndarray) -> float:
    from statsmodels.stats.inter_rater import fleiss_kappa

    with np.errstate(all="ignore"):
        return float(fleiss_kappa(table, method="fleiss"))


def versus_model(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(McNemar per reader and arm on paired correctness reader vs model,
    Cochran's Q per arm over every reader and the model)."""
    from statsmodels.stats.contingency_tables import cochrans_q, mcnemar

    pairs, overall = [], []
    scored = df.dropna(subset=["truth_k", "model_k"])
    for arm, part in scored.groupby("arm_position", sort=True):
        model_ok = part.drop_duplicates("image_id").set_index("image_id")
        model_ok = model_ok["model_k"] == model_ok["truth_k"]
        correct = {}
        for reader, grp in part.groupby("reader"):
            g = grp.set_index("image_id")
            ok = g["answer_k"] == g["truth_k"]
            correct[reader] = ok
            m = model_ok.loc[ok.index]
            table = [[int((ok & m).sum()), int((ok & ~m).sum())], [int((~ok & m).sum()), int((~ok & ~m).sum())]]
            res = mcnemar(table, exact=True)
            pairs.append({"arm_position": arm, "arm": part["arm"].iloc[0], "reader": reader, "n": len(ok),
                          "reader_accuracy": float(ok.mean()), "model_accuracy": float(m.mean()),
                          "reader_only_correct": table[0][1], "model_only_correct": table[1][0],
                          "mcnemar_statistic": float(res.statistic), "mcnemar_p": float(res.pvalue)})
        frame = pd.DataFrame(correct).assign(model=model_ok).dropna()
        if frame.shape[1] >= 3 and len(frame):
            q = cochrans_q(frame.to_numpy(int))
            overall.append({"arm_position": arm, "arm": part["arm"].iloc[0], "raters": frame.shape[1],
                            "n": len(frame), "cochran_q": float(q.statistic), "df": int(q.df),
                            "p": float(q.pvalue)})
    return pd.DataFrame(pairs), pd.DataFrame(overall)


def reading_times(df: pd.DataFrame) -> pd.DataFrame:
    """Per reader and arm: cases, total minutes, mean and median seconds per case."""
    g = df.groupby(["reader", "arm_position", "arm"])["seconds"]
    out = pd.DataFrame({"n": g.count(), "total_minutes": g.sum() / 60.0, "mean_seconds": g.mean(),
                        "median_seconds": g.median()}).reset_index()
    return out


def arm_differences(df: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per reader: accuracy in each later arm minus the first arm on the same cases,
    paired bootstrap CI over cases and McNemar (statsmodels) between the arms."""
    from statsmodels.stats.contingency_tables import mcnemar

    rows = []
    scored = df.dropna(subset=["truth_k"])
    arms = sorted(scored["arm_position"].unique())
    if len(arms) < 2:
        return pd.DataFrame(rows)
    for reader, grp in scored.groupby("reader"):
        ok = (grp["answer_k"] == grp["truth_k"]).groupby([grp["image_id"], grp["arm_position"]]).first().unstack()
        base = arms[0]
        for arm in arms[1:]:
            if base not in ok or arm not in ok:
                continue
            both = ok[[base, arm]].dropna().astype(bool)
            a, b = both[base].to_numpy(), both[arm].to_numpy()
            lo, hi = _boot(lambda i, a=a, b=b: float(b[i].mean() - a[i].mean()), len(a), n_boot, seed)
            table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
            rows.append({"reader": reader, "arm": scored.loc[scored["arm_position"] == arm, "arm"].iloc[0],
                         "versus": scored.loc[scored["arm_position"] == base, "arm"].iloc[0], "n": len(a),
                         "accuracy_base": float(a.mean()), "accuracy_arm": float(b.mean()),
                         "difference": float(b.mean() - a.mean()), "difference_lo": lo, "difference_hi": hi,
                         "mcnemar_p": float(mcnemar(table, exact=True).pvalue)})
    return pd.DataFrame(rows)


def model_roc(info: dict[str, Any], positive: int) -> dict[str, Any] | None:
    """The model's ROC for ``positive`` vs the rest on the study's cases (scikit-learn)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    ids = [i for i in info["cases"] if i in info["model"] and i in info["truth"]]
    if not ids:
        return None
    y = np.array([info["truth"][i] == positive for i in ids])
    score = np.array([info["model"][i][1][positive] for i in ids])
    if y.all() or not y.any():
        return None
    fpr, tpr, _ = roc_curve(y, score)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "auc": float(roc_auc_score(y, score)), "n": len(ids)}


def analyze_study(project: Project, study: str | int, *, positive: str | None = None, n_boot: int = 1000,
                  seed: int = 0, box_reference: str | None = None) -> dict[str, Any]:
    """Every table (data frames), the model's ROC and a JSON-able summary.  A study read
    with boxes adds the box tables (``read_boxes.box_tables``; ``box_reference`` is
    'project', the default, or a reader's name)."""
    df, info = study_frame(project, study)
    if positive is not None and positive not in info["classes"]:
        raise ValueError(f"--positive {positive!r}: not a class of the study ({', '.join(info['classes'])})")
    pos = info["classes"].index(positive) if positive else 0
    perf = performance(df, pos)
    mcn, cochran = versus_model(df)
    tables = {"reads": df.drop(columns=["class_id"]), "performance": perf,
              "cohen_kappa": cohen_pairs(df, ordinal=info["ordinal"], n_boot=n_boot, seed=seed,
                                         n_classes=len(info["classes"])),
              "fleiss_kappa": fleiss_groups(df, n_boot=n_boot, seed=seed, n_classes=len(info["classes"])),
              "mcnemar_vs_model": mcn, "cochran_q": cochran, "reading_times": reading_times(df),
              "arm_differences": arm_differences(df, n_boot=n_boot, seed=seed)}
    tables |= _shape_agreement(project, info["cases"], n_boot=n_boot, seed=seed)
    if info["boxes"]:
        from mskstudio.ml.readers.read_boxes import box_tables, study_read_boxes

        drawn = study_read_boxes(project, info["id"])
        tables["reads"]["boxes"] = [
            json.dumps([[round(v, 1) for v in b] for b in drawn.get((r, a), {}).get(i, [])])
            for r, a, i in zip(df["reader"], df["arm"], df["image_id"], strict=True)]
        tables |= box_tables(project, info["id"], info["cases"], reference=box_reference,
                             n_boot=n_boot, seed=seed)
    roc = model_roc(info, pos)
    summary = {"study": info["name"], "classes": info["classes"], "positive": info["classes"][pos],
               "cases": len(info["cases"]), "reads": len(df), "model_auc": roc and roc["auc"],
               "accuracy": [{k: r[k] for k in ("arm", "level", "who", "n", "accuracy", "accuracy_lo",
                                               "accuracy_hi")} for r in perf.to_dict("records")]}
    return {"tables": tables, "roc": roc, "summary": summary, "info": {k: info[k] for k in ("name", "classes")}}


def _shape_agreement(project: Project, cases, *, n_boot: int, seed: int) -> dict[str, pd.DataFrame]:
    """Readers' masks and boxes on the study's images, where two readers drew any."""
    from mskstudio.ml.readers.agreement import box_agreement, mask_agreement, summarise

    out = {}
    for name, per_image, cols in (("mask_agreement", mask_agreement(project, cases), ("iou", "dice")),
                                  ("box_agreement", box_agreement(project, cases), ("iou",))):
        if not per_image.empty:
            out[name] = per_image
            out[f"{name}_summary"] = summarise(per_image, cols, n_boot=n_boot, seed=seed)
    return out


def export_reads(project: Project, study: str | int, path) -> int:
    """Every read as CSV: reader, role, arm, image pseudonym, answer, confidence, seconds and
    the lesion boxes drawn with it (JSON list of [x0, y0, x1, y1] image pixels; ``[]`` none)."""
    row = project.readers.study(study)
    if row is None:
        raise ValueError(f"reader study {study!r}: no such study")
    ident = {int(r["id"]): (r["pseudonym"], r["sop_uid"]) for r in project.images.identities()}
    reads = project.readers.reads(int(row["id"]))
    boxes = project.readers.read_boxes(int(row["id"]))
    frame = pd.DataFrame([{"reader": r["reader"], "role": r["role"], "arm": r["arm"],
                           "arm_position": r["arm_position"] + 1, "order": r["position"] + 1,
                           "patient": ident[r["image_id"]][0], "image": ident[r["image_id"]][1],
                           "answer": r["answer"], "confidence": r["confidence"], "seconds": r["seconds"],
                           "read_at": r["read_at"],
                           "boxes": json.dumps([[round(v, 1) for v in b] for b in boxes.get(int(r["id"]), [])])}
                          for r in reads],
                         columns=["reader", "role", "arm", "arm_position", "order", "patient", "image", "answer",
                                  "confidence", "seconds", "read_at", "boxes"])
    frame.to_csv(path, index=False)
    return len(frame)


def write_outputs(result: dict[str, Any], out) -> list:
    """CSV tables and PNG/SVG figures into ``out``; returns the paths written."""
    from pathlib import Path

    from mskstudio.ml.readers.figures import write_figures

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in result["tables"].items():
        path = out / f"{name}.csv"
        table.to_csv(path, index=False)
        written.append(path)
    (out / "summary.json").write_text(json.dumps(result["summary"], indent=2, default=str))
    written.append(out / "summary.json")
    return written + write_figures(result, out)
