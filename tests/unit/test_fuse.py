"""Clinical feature table, metadata baselines, late fusion and stacking (ml/fuse)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fuse_fixture import fake_image_run

from mskstudio.jobs import JobContext
from mskstudio.ml.fuse import crossfit as cfm
from mskstudio.ml.fuse.features import ClinicalEncoder, clinical_table, parse_fields
from mskstudio.ml.fuse.fuse import run_fuse


# ---- the feature table -----------------------------------------------------------------------
def test_labs_are_normalised_by_each_rows_own_range(phantom_project):
    ids = project_ids = phantom_project.images.ids()
    table = clinical_table(phantom_project, project_ids, ["lab:ALP", "lab:CRP"])
    units = {kit[0] for kit in table.lab_kit["lab:ALP"] if kit[0]}
    assert len(units) >= 2, "the phantom centres use different ALP kits"
    norm = table.numeric("lab:ALP")
    for row in range(len(ids)):
        v, (_unit, _lo, hi) = table.raw["lab:ALP"][row], table.lab_kit["lab:ALP"][row]
        if v is None:
            assert np.isnan(norm[row])
        else:
            assert norm[row] == pytest.approx(v / hi)
    # Two kits, same patient value in multiples of the upper limit: the same model input.
    pid = phantom_project.images.patient_of([ids[0]])[ids[0]]
    phantom_project.images.set_lab(pid, "ALP", 260.0, "U/L", 40.0, 130.0)
    a = clinical_table(phantom_project, [ids[0]], ["lab:ALP"]).numeric("lab:ALP")[0]
    phantom_project.images.set_lab(pid, "ALP", 4.6, "µkat/L", 0.6, 2.3)
    b = clinical_table(phantom_project, [ids[0]], ["lab:ALP"]).numeric("lab:ALP")[0]
    assert a == pytest.approx(2.0) and b == pytest.approx(2.0)
    assert clinical_table(phantom_project, [ids[0]], ["lab:ALP"]).raw["lab:ALP"][0] == 4.6


def test_lab_without_range_names_lab_and_centre(phantom_project):
    ids = phantom_project.images.ids()
    pid = phantom_project.images.patient_of([ids[0]])[ids[0]]
    phantom_project.images.set_lab(pid, "ALP", 312.0, "U/L", None, None)
    with pytest.raises(ValueError, match=r"lab ALP at C-\w+: value 312 U/L has no reference range"):
        clinical_table(phantom_project, ids, ["age", "lab:ALP"])


def test_contradicting_unit_between_centres(phantom_project):
    ids = phantom_project.images.ids()
    pids = sorted(set(phantom_project.images.patient_of(ids).values()))
    centres = {}
    for r in phantom_project.images.patient_centre_counts():
        centres.setdefault(int(r["patient_id"]), r["centre"])
    a = pids[0]
    b = next(p for p in pids if centres[p] != centres[a])
    phantom_project.images.set_lab(a, "CRP", 3.0, "mg/L", 0.0, 5.0)
    phantom_project.images.set_lab(b, "CRP", 30.0, "mg/L", 0.0, 50.0)  # really mg/dL x 10?
    with pytest.raises(ValueError, match=r"lab CRP: unit 'mg/L' at C-\w+ .*contradicts C-\w+"):
        clinical_table(phantom_project, ids, ["lab:CRP"])


def test_bad_field_name_is_a_clear_error(phantom_project):
    with pytest.raises(ValueError, match="clinical field 'shoe_size' is not one of"):
        parse_fields("age,shoe_size")
    with pytest.raises(ValueError, match="clinical field 'lab:xyz': the project has no such lab"):
        parse_fields("age,lab:xyz", phantom_project)
    assert parse_fields("Age, sex ,lab:alp", phantom_project) == ["age", "sex", "lab:ALP"]


def test_missing_values_never_drop_a_row(phantom_project):
    ids = phantom_project.images.ids()
    pid = phantom_project.images.patient_of([ids[0]])[ids[0]]
    phantom_project.db.execute("DELETE FROM clinical WHERE patient_id = ?", (pid,))
    phantom_project.db.execute("DELETE FROM labs WHERE patient_id = ?", (pid,))
    table = clinical_table(phantom_project, ids, ["age", "sex", "lab:ALP"])
    assert len(table.image_ids) == len(ids)
    rows = np.arange(len(ids))
    enc = ClinicalEncoder().fit(table, rows[1:])  # fitted without row 0
    x = enc.transform(table, rows)
    assert x.shape[0] == len(ids) and not np.isnan(x).any()
    col = {c: j for j, c in enumerate(enc.columns)}
    assert x[0, col["age:missing"]] == 1 and x[0, col["sex:missing"]] == 1 and x[0, col["lab:ALP:missing"]] == 1
    assert x[0, col["age"]] == pytest.approx(enc.medians["age"])  # training median
    ages = table.numeric("age")[1:]
    assert enc.medians["age"] == pytest.approx(np.nanmedian(ages))
    assert x[0, [col[c] for c in enc.columns if c.startswith("sex=")]].sum() == 0
    raw = ClinicalEncoder(impute=False).fit(table, rows).transform(table, rows)
    assert np.isnan(raw[0, col["age"]])  # HistGradientBoosting gets NaN, not a median
    assert enc.rule()["fitted_on"] == "training rows only"


def test_imputation_is_fitted_on_training_rows_only(phantom_project):
    ids = phantom_project.images.ids()
    table = clinical_table(phantom_project, ids, ["age", "site"])
    first, rest = np.arange(10), np.arange(10, len(ids))
    enc = ClinicalEncoder().fit(table, first)
    assert enc.medians["age"] == pytest.approx(np.nanmedian(table.numeric("age")[first]))
    assert set(enc.categories["site"]) == {str(table.raw["site"][r]) for r in first if table.raw["site"][r]}
    assert enc.transform(table, rest).shape == (len(rest), len(enc.columns))


# ---- cross-fitting -------------------------------------------------------------------------------
class SpyLearner:
    """Records the rows (by a hidden row-number column) every fit saw."""

    fits: list[set[int]] = []

    def __init__(self, *_):
        from sklearn.linear_model import LogisticRegression

        self.inner = LogisticRegression(max_iter=500)

    def fit(self, x, y):
        SpyLearner.fits.append(set(x[:, 0].astype(int).tolist()))
        self.inner.fit(x[:, 1:], y)
        self.classes_ = self.inner.classes_
        return self

    def predict_proba(self, x):
        return self.inner.predict_proba(x[:, 1:])


def test_stacking_never_fits_a_fold_on_its_own_out_of_fold_scores():
    rng = np.random.default_rng(0)
    n_cv, n_test, c = 90, 30, 3
    y = rng.integers(0, c, n_cv + n_test)
    probs = rng.dirichlet(np.ones(c), n_cv + n_test)
    rowno = np.arange(n_cv + n_test, dtype=float)[:, None]
    design = cfm.Design(np.hstack([rowno, probs]), ["row", "p0", "p1", "p2"], None, y, c)
    fold = np.repeat([0, 1, 2], n_cv // 3)
    SpyLearner.fits = []
    out = cfm.cross_fit(design, fold, n_cv, "spy", factory=lambda *_: SpyLearner())
    assert len(SpyLearner.fits) == 4
    for f in range(3):
        own = set(np.flatnonzero(fold == f).tolist())
        assert not SpyLearner.fits[f] & own, f"fold {f} was fitted on its own rows"
        assert SpyLearner.fits[f] == set(range(n_cv)) - own
    assert SpyLearner.fits[3] == set(range(n_cv))  # the final fit: every CV row, no hold-out row
    for step in out.plan:
        assert not set(step["fit"]) & set(step["score"])
    assert out.oof_probs.shape == (n_cv, c) and out.test_probs.shape == (n_test, c)
    assert np.allclose(out.oof_probs.sum(1), 1)


def test_missing_class_in_a_training_fold_keeps_every_column():
    y = np.array([0, 1, 0, 1, 2, 0, 1, 0, 1, 0])
    design = cfm.Design(np.eye(3)[y] + 0.1, ["a", "b", "c"], None, y, 3)
    fold = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])[:8]
    out = cfm.cross_fit(design, fold, 8, "logreg")
    assert out.test_probs.shape == (2, 3) and out.oof_probs.shape == (8, 3)


# ---- the job ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["metadata", "late", "stacking"])
def test_fuse_job_stores_a_classifier_shaped_run(phantom_project, mode):
    image_run = fake_image_run(phantom_project)
    res = run_fuse(phantom_project, {"image_run": image_run, "mode": mode, "clinical": "age,sex,site,lab:ALP",
                                     "n_boot": 50}, JobContext.null())
    row = phantom_project.models.get(res["model_run_id"])
    assert row["kind"] == "fusion" and row["parent_run_id"] == image_run and row["status"] == "done"
    m = json.loads(row["metrics"])
    img = json.loads(phantom_project.models.get(image_run)["metrics"])
    assert m["holdout"]["image_ids"] == img["holdout"]["image_ids"]  # same hold-out, same order
    assert m["main"]["oof"]["image_ids"] == img["main"]["oof"]["image_ids"]
    assert json.loads(row["split"]) == json.loads(phantom_project.models.get(image_run)["split"])
    assert {"accuracy", "per_class", "macro", "confusion"} <= set(m["holdout"])
    assert m["holdout"]["n"] == len(img["holdout"]["image_ids"])
    assert m["fusion"]["imputation"]["fitted_on"] == "training rows only"
    assert set(m["vs_image"]) == {"accuracy", "macro_auc"}
    image_cols = [c for c in m["fusion"]["columns"] if c.startswith("image:")]
    assert (len(image_cols) == 0) == (mode == "metadata")


def test_fuse_rejects_a_non_classifier_run(phantom_project):
    run = phantom_project.models.create("segmenter", "unet", params={})
    with pytest.raises(ValueError, match="is a segmenter run, not an image classifier run"):
        run_fuse(phantom_project, {"image_run": run, "mode": "late", "clinical": "age"}, JobContext.null())
    with pytest.raises(ValueError, match="unknown fusion mode 'joint'"):
        run_fuse(phantom_project, {"image_run": run, "mode": "joint", "clinical": "age"}, JobContext.null())
