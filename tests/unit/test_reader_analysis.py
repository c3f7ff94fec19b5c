"""Reader-study analysis on a simulated study: accuracies recovered, every κ and test
equal to the libraries' values computed here from the raw reads, CLI outputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.contingency_tables import cochrans_q, mcnemar
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
from test_reader_study import region_set

from mskstudio.cli import main
from mskstudio.ml.readers.analysis import analyze_study, cohen_kappa_resampled
from mskstudio.ml.readers.setup import create_study, truth_labels
from mskstudio.ml.readers.simulate import simulate_reads

ERRORS = {"ann": {"image": 0.10, "assisted": 0.05}, "bob": {"image": 0.25, "assisted": 0.15},
          "cid": {"image": 0.40, "assisted": 0.30}}


@pytest.fixture
def simulated(phantom_project):
    p = phantom_project
    names = region_set(p)
    ls = p.labels.find_label_set("region")
    class_ids = [p.labels.class_id(ls, n) for n in names]
    truth = truth_labels(p, p.labels.find_label_set("truth:region"), names)
    rng = np.random.default_rng(3)
    run = p.models.create("classifier", "resnet18", name="sim-model", label_set_id=ls)
    rows = []
    for image_id, k in truth.items():  # a model right on about 80% of the cases
        guess = k if rng.random() < 0.8 else int(rng.choice([c for c in range(3) if c != k]))
        probs = np.full(3, 0.1)
        probs[guess] = 0.8
        probs = (probs + rng.uniform(0, 0.05, 3)) / (probs.sum() + 0.075)
        rows.append((image_id, class_ids[guess], float(probs[guess]),
                     json.dumps({str(c): float(q) for c, q in zip(class_ids, probs, strict=True)}), 0))
    p.models.save_predictions(run, rows)
    p.readers.save("ann", role="resident", years=2)
    p.readers.save("bob", role="specialist", years=8)
    p.readers.save("cid", role="specialist", years=15)
    sid = create_study(p, {"name": "sim", "label_set": "region", "truth_set": "truth:region",
                           "classes": ",".join(names), "readers": "ann,bob,cid",
                           "arms": f"image,assisted:{run}", "washout_days": 28, "seed": 11, "ordinal": True})
    n = simulate_reads(p, sid, ERRORS, seed=4)
    return p, sid, names, n


def _raw(p, sid):
    """arm -> reader -> {image: answer index}, from the store directly."""
    study = p.readers.study(sid)
    index = {c: k for k, c in enumerate(json.loads(study["classes"]))}
    out: dict = {}
    for r in p.readers.reads(sid):
        out.setdefault(r["arm"], {}).setdefault(r["reader"], {})[r["image_id"]] = index[r["class_id"]]
    return out


def test_simulated_study_recovers_each_readers_accuracy(simulated):
    p, sid, names, n = simulated
    cases = p.readers.case_images(sid)
    assert n == 3 * 2 * len(cases)
    result = analyze_study(p, sid, n_boot=100, seed=0)
    perf = result["tables"]["performance"]
    for reader, rates in ERRORS.items():
        for arm, rate in rates.items():
            (row,) = perf[(perf["who"] == reader) & (perf["arm"] == arm)].to_dict("records")
            assert row["n"] == len(cases)
            assert row["accuracy_lo"] <= 1 - rate <= row["accuracy_hi"]
            assert row["accuracy_hi"] - row["accuracy_lo"] < 0.4
    # the better reader is ranked better; groups pool their readers' reads
    acc = perf[(perf["level"] == "reader") & (perf["arm"] == "image")].set_index("who")["accuracy"]
    assert acc["ann"] > acc["bob"] > acc["cid"]
    spec = perf[(perf["who"] == "specialist") & (perf["arm"] == "image")].iloc[0]
    assert spec["n"] == 2 * len(cases)


def test_every_kappa_and_test_equals_the_library_on_the_raw_reads(simulated):
    p, sid, names, _ = simulated
    result = analyze_study(p, sid, n_boot=50, seed=0)
    raw = _raw(p, sid)
    cohen = result["tables"]["cohen_kappa"]
    assert len(cohen) == 2 * 3 * 2  # arms x pairs x (unweighted, linear)
    for row in cohen.to_dict("records"):
        a, b = raw[row["arm"]][row["reader_a"]], raw[row["arm"]][row["reader_b"]]
        ids = sorted(set(a) & set(b))
        expected = cohen_kappa_score([a[i] for i in ids], [b[i] for i in ids],
                                     weights=None if row["weights"] == "none" else row["weights"])
        assert row["kappa"] == pytest.approx(expected, abs=1e-9)
        assert row["kappa_lo"] <= row["kappa"] <= row["kappa_hi"]
        # the bootstrap's vectorised κ equals scikit-learn's on the same resamples
        x, y = np.array([a[i] for i in ids]), np.array([b[i] for i in ids])
        weights = None if row["weights"] == "none" else row["weights"]
        fast = cohen_kappa_resampled(x, y, 3, weights, n_boot=25, seed=9)
        idx = np.random.default_rng(9).integers(0, len(x), (25, len(x)))
        slow = [cohen_kappa_score(x[j], y[j], labels=[0, 1, 2], weights=weights) for j in idx]
        np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-9)
    fleiss = result["tables"]["fleiss_kappa"]
    assert set(fleiss["group"]) == {"specialist", "all readers"}  # one resident: no group κ
    for row in fleiss.to_dict("records"):
        readers = row["readers"].split(",")
        ids = sorted(set.intersection(*(set(raw[row["arm"]][r]) for r in readers)))
        m = np.array([[raw[row["arm"]][r][i] for r in readers] for i in ids])
        expected = fleiss_kappa(aggregate_raters(m, n_cat=3)[0], method="fleiss")
        assert row["kappa"] == pytest.approx(expected, abs=1e-9)
    # McNemar and Cochran's Q against the model
    truth = truth_labels(p, p.labels.find_label_set("truth:region"), names)
    index = {c: k for k, c in enumerate(json.loads(p.readers.study(sid)["classes"]))}
    model = {r["image_id"]: index[r["class_id"]] for r in p.models.predictions(p.readers.study(sid)["model_run_id"])}
    for row in result["tables"]["mcnemar_vs_model"].to_dict("records"):
        ans = raw[row["arm"]][row["reader"]]
        r_ok = [ans[i] == truth[i] for i in ans]
        m_ok = [model[i] == truth[i] for i in ans]
        table = [[sum(x and y for x, y in zip(r_ok, m_ok, strict=True)),
                  sum(x and not y for x, y in zip(r_ok, m_ok, strict=True))],
                 [sum(y and not x for x, y in zip(r_ok, m_ok, strict=True)),
                  sum(not x and not y for x, y in zip(r_ok, m_ok, strict=True))]]
        assert row["mcnemar_p"] == pytest.approx(mcnemar(table, exact=True).pvalue, abs=1e-12)
    for row in result["tables"]["cochran_q"].to_dict("records"):
        arm = raw[row["arm"]]
        ids = sorted(arm["ann"])
        x = np.array([[arm[r][i] == truth[i] for r in sorted(arm)] + [model[i] == truth[i]] for i in ids], int)
        assert row["cochran_q"] == pytest.approx(cochrans_q(x).statistic, abs=1e-9)
    # the assisted arm helps each simulated reader by the simulated amount (up to rounding
    # of the error counts: round(e * n) / n is within 0.5 / n of e in each arm)
    diff = result["tables"]["arm_differences"].set_index("reader")
    n_cases = len(p.readers.case_images(sid))
    for reader, rates in ERRORS.items():
        assert diff.loc[reader, "difference"] == pytest.approx(rates["image"] - rates["assisted"],
                                                               abs=1.0 / n_cases + 1e-9)
        assert diff.loc[reader, "difference_lo"] <= diff.loc[reader, "difference"] <= diff.loc[reader, "difference_hi"]
    assert 0.5 < result["roc"]["auc"] <= 1.0
    # what a report calls: every study with reads, with the same tables
    from mskstudio.ml.readers.job import study_results

    (found,) = study_results(p, n_boot=20)
    assert found["study"] == "sim" and found["summary"]["reads"] == len(result["tables"]["reads"])


def test_cli_analyze_writes_tables_and_figures_and_export_every_read(simulated, tmp_path, capsys):
    p, sid, names, n = simulated
    out = tmp_path / "analysis"
    assert main(["reader-study", "analyze", str(p.root), "sim", "--out", str(out), "--bootstrap", "30",
                 "--positive", names[1]]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["positive"] == names[1] and summary["reads"] == n
    for name in ("performance.csv", "cohen_kappa.csv", "fleiss_kappa.csv", "mcnemar_vs_model.csv",
                 "reading_times.csv", "arm_differences.csv", "roc_readers.png", "roc_readers.svg",
                 "accuracy.png", "reading_time.svg"):
        assert (out / name).stat().st_size > 100, name
    csv_path = tmp_path / "reads.csv"
    assert main(["reader-study", "export", str(p.root), "sim", "--out", str(csv_path)]) == 0
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n
    assert set(rows[0]) >= {"reader", "arm", "patient", "image", "answer", "confidence", "seconds"}
    pseudonyms = {r["pseudonym"] for r in p.db.query("SELECT pseudonym FROM patients")}
    assert {r["patient"] for r in rows} <= pseudonyms
    assert {r["answer"] for r in rows} <= set(names)
    assert main(["reader-study", "analyze", str(p.root), "sim", "--positive", "nope"]) == 1
    assert "--positive 'nope'" in capsys.readouterr().err


def test_the_study_report_shows_the_reader_study(simulated, tmp_path):
    from mskstudio.ml.readers.job import report_tables
    from mskstudio.ml.report.render import ReportWriter
    from mskstudio.ml.report.sections import readers_section

    p, sid, names, n = simulated
    tables = report_tables(p)
    perf = next(t for t in tables if t["title"] == "sim: performance")
    header = perf["rows"][0]
    assert {"who", "n", "accuracy"} <= set(header)
    # one row per reader and arm at least, with the accuracy the analysis computed
    analysed = analyze_study(p, sid, n_boot=50, seed=0)["tables"]["performance"]
    who, acc = header.index("who"), header.index("accuracy")
    first = analysed.iloc[0]
    assert any(r[who] == first["who"] and abs(r[acc] - round(first["accuracy"], 4)) < 1e-9
               for r in perf["rows"][1:])
    (tmp_path / "tables").mkdir()
    section = readers_section(p, ReportWriter(tmp_path))
    titles = [t["title"] for t in section["tables"]]
    assert "sim: performance" in titles and "sim: cohen kappa" in titles
    assert (tmp_path / "tables" / "readers_0.csv").read_text().startswith(",".join(header))
