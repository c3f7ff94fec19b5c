"""Fit a fusion learner on the image run's folds: out-of-fold scores for CV, one final fit for the hold-out.

Rows are the image run's rows: first its out-of-fold (CV) images, then its hold-out.
The image block of a row is the image model's score of that row that the model did
not train on: the out-of-fold probability for a CV row, the fold ensemble's for a
hold-out row.  Modes:

* ``metadata``: clinical columns only (the metadata-only baseline);
* ``late``: the image model's centred log-probabilities (its logits up to a constant)
  + clinical columns, by default into a logistic regression;
* ``stacking``: the image model's out-of-fold probabilities + clinical columns, by
  default into a random forest.

``cross_fit`` scores fold ``f`` with a learner fitted on the CV rows of the OTHER folds
(the encoder's medians and categories too), and the hold-out with one learner fitted on
every CV row; a learner never sees the rows it scores, and never a hold-out row.  The
``plan`` it returns (which rows each fit used, which it scored) is what the tests check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mskstudio.jobs import JobContext
from mskstudio.ml.fuse.features import ClinicalEncoder, ClinicalTable

MODES = ("metadata", "late", "stacking")
LEARNERS = ("logreg", "hgb", "rf")
DEFAULT_LEARNER = {"metadata": "hgb", "late": "logreg", "stacking": "rf"}
IMAGE_GROUP = "image"


def make_learner(name: str, seed: int = 0) -> Any:
    """A small scikit-learn classifier (seconds on 2,000 rows, one core)."""
    if name == "logreg":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
    if name == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.05, max_leaf_nodes=15,
                                              early_stopping=False, random_state=seed)
    if name == "rf":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=200, min_samples_leaf=3, n_jobs=1, random_state=seed)
    raise ValueError(f"unknown learner {name!r} (one of {', '.join(LEARNERS)})")


def image_block(mode: str, probs: np.ndarray, classes: list[str]) -> tuple[np.ndarray, list[str]]:
    if mode not in MODES:
        raise ValueError(f"unknown fusion mode {mode!r} (one of {', '.join(MODES)})")
    if mode == "metadata":
        return np.zeros((len(probs), 0)), []
    if mode == "late":
        logp = np.log(np.clip(probs, 1e-6, 1.0))
        return logp - logp.mean(1, keepdims=True), [f"image:logit:{c}" for c in classes]
    return np.asarray(probs, float), [f"image:p:{c}" for c in classes]


@dataclass
class Design:
    """Everything a fit needs, row-aligned: image block, clinical table, targets."""

    image_x: np.ndarray
    image_columns: list[str]
    table: ClinicalTable | None
    y: np.ndarray
    n_classes: int
    impute: bool = True
    # Image embeddings instead of scores (``embed.py``): reduced by a PCA fitted on each fit's
    # own rows to this many components (0 = the image block is used as is) ...
    image_pca: int = 0
    # ... and the hold-out rows' image block once per fold model (their spaces differ):
    # hold-out probabilities are the mean over these views.
    test_views: list[np.ndarray] | None = None


@dataclass
class Fitted:
    encoder: ClinicalEncoder | None
    model: Any
    columns: list[str]
    groups: list[str]
    n_classes: int
    pca: Any = None          # fitted on the fit rows' image embeddings only (image_pca > 0)

    def matrix(self, design: Design, rows: np.ndarray) -> np.ndarray:
        image = design.image_x[rows]
        if self.pca is not None:
            image = self.pca.transform(image)
        parts = [image]
        if self.encoder is not None:
            parts.append(self.encoder.transform(design.table, rows))
        return np.hstack(parts)

    def predict_proba(self, design: Design, rows: np.ndarray) -> np.ndarray:
        return self.full_proba(self.model.predict_proba(self.matrix(design, rows)))

    def full_proba(self, p: np.ndarray) -> np.ndarray:
        """Columns for every class, also those a training fold lacked (probability 0)."""
        out = np.zeros((len(p), self.n_classes))
        out[:, np.asarray(self.model.classes_, int)] = p
        return out


def fit(design: Design, rows: np.ndarray, learner: str, seed: int = 0,
        factory: Callable[[str, int], Any] = make_learner) -> Fitted:
    rows = np.asarray(rows, int)
    encoder = None
    pca = None
    columns = list(design.image_columns)
    if design.image_pca and design.image_x.shape[1]:
        from sklearn.decomposition import PCA

        n = max(1, min(int(design.image_pca), len(rows) - 1, design.image_x.shape[1]))
        pca = PCA(n_components=n, random_state=seed).fit(design.image_x[rows])
        columns = [f"image:pc{j + 1}" for j in range(n)]
    groups = [IMAGE_GROUP] * len(columns)
    if design.table is not None and design.table.fields:
        encoder = ClinicalEncoder(impute=design.impute).fit(design.table, rows)
        columns += encoder.columns
        groups += encoder.groups
    if not columns:
        raise ValueError("nothing to fit: no image scores and no clinical fields")
    fitted = Fitted(encoder, factory(learner, seed), columns, groups, design.n_classes, pca)
    fitted.model.fit(fitted.matrix(design, rows), design.y[rows])
    return fitted


def with_test_view(design: Design, test: np.ndarray, view: np.ndarray) -> Design:
    """``design`` whose hold-out rows carry ``view`` as their image block."""
    from dataclasses import replace

    image_x = design.image_x.copy()
    image_x[test] = view
    return replace(design, image_x=image_x, test_views=None)


@dataclass
class CrossFit:
    oof_probs: np.ndarray
    test_probs: np.ndarray
    final: Fitted
    plan: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def cross_fit(design: Design, fold: np.ndarray, n_cv: int, learner: str, *, seed: int = 0,
              ctx: JobContext | None = None, factory: Callable[[str, int], Any] = make_learner) -> CrossFit:
    """Rows ``0..n_cv-1`` are CV rows (``fold[i]`` = the fold that validates row i); the rest hold-out."""
    ctx = ctx or JobContext.null()
    from threadpoolctl import threadpool_limits

    # One thread: on a busy 2-core box HistGradientBoosting's OpenMP threads made a 9 s fit
    # take 210 s (spin-waiting on cores other jobs held); these tables are too small to share.
    with threadpool_limits(limits=1):
        return _cross_fit(design, fold, n_cv, learner, seed, ctx, factory)


def _cross_fit(design: Design, fold: np.ndarray, n_cv: int, learner: str, seed: int, ctx: JobContext,
               factory: Callable[[str, int], Any]) -> CrossFit:
    factory(learner, seed)  # imports scikit-learn before the clock starts: the time is the fitting
    t0 = time.perf_counter()
    fold = np.asarray(fold, int)
    cv = np.arange(n_cv)
    test = np.arange(n_cv, len(design.y))
    oof = np.zeros((n_cv, design.n_classes))
    plan = []
    folds = sorted(set(fold.tolist()))
    for k, f in enumerate(folds):
        ctx.check_cancelled()
        score_rows = cv[fold == f]
        fit_rows = cv[fold != f]
        oof[score_rows] = fit(design, fit_rows, learner, seed, factory).predict_proba(design, score_rows)
        plan.append({"fold": int(f), "fit": fit_rows.tolist(), "score": score_rows.tolist()})
        ctx.progress((k + 1) / (len(folds) + 1), f"fold {f}")
    final = fit(design, cv, learner, seed, factory)
    test_probs = final.predict_proba(design, test) if len(test) else np.zeros((0, design.n_classes))
    if len(test) and design.test_views:
        test_probs = np.mean([final.predict_proba(with_test_view(design, test, v), test)
                              for v in design.test_views], axis=0)
    plan.append({"fold": "final", "fit": cv.tolist(), "score": test.tolist()})
    ctx.progress(1.0, "fitted")
    return CrossFit(oof, test_probs, final, plan, time.perf_counter() - t0)
