"""The cohort table's summaries and tests against scipy on hand-made cohorts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mskstudio.ml.evaluate import cohort as co


def _cohort(seed=0, skewed=False):
    rng = np.random.default_rng(seed)
    attrs, group = {}, {}
    for i in range(120):
        g = "tumour" if i % 3 == 0 else "healthy"
        age = rng.lognormal(3, 0.8) if skewed else rng.normal(45 if g == "tumour" else 40, 10)
        attrs[i] = {"patient_id": i // 2, "age_years": float(age), "sex": "F" if rng.random() < 0.5 else "M",
                    "view": None if i % 10 == 0 else ("AP" if rng.random() < 0.6 else "LAT")}
        group[i] = g
    return attrs, group


def _values(attrs, group, g, key, per_patient):
    seen, out = set(), []
    for i in sorted(attrs):
        if group[i] != g or attrs[i][key] is None:
            continue
        if per_patient:
            if attrs[i]["patient_id"] in seen:
                continue
            seen.add(attrs[i]["patient_id"])
        out.append(attrs[i][key])
    return out


def test_normal_ages_get_mean_sd_and_anova():
    attrs, group = _cohort()
    t = co.cohort_table(attrs, group)
    assert t["columns"] == ["healthy", "tumour", "all"]
    age = next(r for r in t["rows"] if r["variable"].startswith("age"))
    assert age["variable"].endswith("mean ± SD") and age["test"] == "ANOVA"
    h = _values(attrs, group, "healthy", "age_years", True)
    tu = _values(attrs, group, "tumour", "age_years", True)
    assert all(stats.shapiro(v).pvalue >= 0.05 for v in (h, tu))
    assert age["p"] == pytest.approx(stats.f_oneway(h, tu).pvalue)
    assert age["cells"][0] == f"{np.mean(h):.1f} ± {np.std(h, ddof=1):.1f}"
    patients = next(r for r in t["rows"] if r["variable"] == "patients")
    assert patients["cells"][0] == str(len(h))


def test_skewed_ages_get_median_iqr_and_kruskal_wallis():
    attrs, group = _cohort(skewed=True)
    age = next(r for r in co.cohort_table(attrs, group)["rows"] if r["variable"].startswith("age"))
    assert age["variable"].endswith("median (IQR)") and age["test"] == "Kruskal–Wallis"
    h = _values(attrs, group, "healthy", "age_years", True)
    tu = _values(attrs, group, "tumour", "age_years", True)
    assert age["p"] == pytest.approx(stats.kruskal(h, tu).pvalue)
    q1, med, q3 = np.percentile(h, [25, 50, 75])
    assert age["cells"][0] == f"{med:.1f} ({q1:.1f}–{q3:.1f})"


def test_categorical_counts_and_chi_square():
    attrs, group = _cohort()
    rows = co.cohort_table(attrs, group)["rows"]
    view = [r for r in rows[2:] if r.get("unit") == "image"]
    ap, lat, missing = view
    h_views = _values(attrs, group, "healthy", "view", False)
    t_views = _values(attrs, group, "tumour", "view", False)
    table = [[h_views.count("AP"), t_views.count("AP")], [h_views.count("LAT"), t_views.count("LAT")]]
    assert ap["p"] == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue)
    assert ap["cells"][0] == f"{table[0][0]} ({100 * table[0][0] / len(h_views):.1f}%)"
    assert missing["level"] == "missing" and missing["cells"][-1] == "12"
    csv_rows = co.cohort_rows(co.cohort_table(attrs, group))
    assert csv_rows[0] == ["variable", "level", "healthy", "tumour", "all", "test", "p"]
