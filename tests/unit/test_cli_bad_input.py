"""Every CLI command, given bad ids and impossible values, answers with one clear line:
a non-zero exit, no traceback, and no model or cluster run row written before the check.

In-process through ``mskstudio.cli.main`` on a copy of the 60-image phantom project, so
the whole table runs in seconds; an exception escaping ``main`` is what a user would
see as a traceback.
"""

from __future__ import annotations

import pytest

from mskstudio.cli import main

P = "PROJECT"
# (arguments, words the one-line error must contain)
CASES = [
    # project paths and ids
    (("info", "/no/such/project.mskproj"), "no such project"),
    (("jobs", "/no/such/project.mskproj"), "no such project"),
    (("new", P), "already exists"),
    (("run-job", P, "999"), "no job 999"),
    (("import", P, "/no/such/folder"), "/no/such/folder"),
    (("import-clinical", P, "/no/such.csv"), "/no/such.csv"),
    (("import-masks", P, "/no/such.csv"), "/no/such.csv"),
    (("import-seg", P, "/no/such/seg"), "/no/such/seg"),
    (("import-labels", P, "/no/such/labels.csv"), "/no/such/labels.csv"),
    (("import-annotations", P, "/no/such/export"), "/no/such/export"),
    (("demo", "DEMO", "--images", "0"), "images"),
    (("measurements", P, "--image", "99999"), "no image 99999"),
    # classifiers
    (("train", P, "diagnosis", "--size", "-5"), "size"),
    (("train", P, "diagnosis", "--epochs", "0"), "epoch"),
    (("train", P, "diagnosis", "--folds", "1"), "folds"),
    (("train", P, "diagnosis", "--folds", "500"), "patients"),
    (("train", P, "diagnosis", "--batch-size", "0"), "batch size"),
    (("train", P, "diagnosis", "--lr", "0"), "learning rate"),
    (("train", P, "diagnosis", "--test-fraction", "1.5"), "hold-out fraction"),
    (("train", P, "diagnosis", "--holdout", "centre", "--test-centre", "NOPE"), "NOPE"),
    (("train", P, "diagnosis", "--init", "run:9999"), "9999"),
    (("train", P, "diagnosis", "--cascade", "nosuchclass"), "nosuchclass"),
    (("train", P, "diagnosis", "--mask-guidance", "-1"), "mask guidance"),
    (("train", P, "no-such-set"), "no-such-set"),
    (("train", P, "truth:region"), "ground truth"),
    (("train", P, "diagnosis", "--resume", "9999"), "9999"),
    (("predict", P, "9999"), "9999"),
    (("explain", P, "9999"), "9999"),
    (("explain", P, "9999", "--scales", "abc"), "scale"),
    (("pointing-game", P, "9999"), "9999"),
    (("evaluate", P, "9999"), "9999"),
    (("export-onnx", P, "9999", "OUT"), "9999"),
    # segmentation
    (("train-seg", P, "--epochs", "0"), "epoch"),
    (("train-seg", P, "--size", "-5"), "size"),
    (("train-seg", P, "--batch-size", "0"), "batch size"),
    (("train-seg", P, "--lr", "-1"), "learning rate"),
    (("train-seg", P, "--folds", "-2"), "folds"),
    (("train-seg", P, "--encoder-run", "9999"), "9999"),
    (("train-seg", P, "--box", "--epochs", "0"), "epoch"),
    (("train-seg", P, "--box", "--size", "-5"), "size"),
    (("prelabel", P, "--run", "9999"), "9999"),
    # clustering
    (("cluster", P, "--k", "0"), "clusters"),
    (("cluster", P, "--k", "100000"), "clusters"),
    (("cluster", P, "--epochs", "0"), "epoch"),
    (("cluster", P, "--batch-size", "0"), "batch size"),
    (("cluster", P, "--input-size", "-5"), "size"),
    (("cluster", P, "--lr", "0"), "learning rate"),
    (("cluster", P, "--init", "run:9999"), "9999"),
    (("cluster", P, "--resume", "9999"), "9999"),
    (("cluster", P, "--label-set", "truth:region"), "ground truth"),
    (("recluster", P, "999", "--k", "3"), "no cluster run 999"),
    (("clusters", P, "999"), "no cluster run 999"),
    # retrieval, label noise
    (("embed", P, "--run", "9999"), "9999"),
    (("similar", P, "99999"), "no image 99999"),
    (("similar", P, "IMAGE", "-k", "0"), "-k"),
    (("similar", P, "IMAGE", "--run", "9999"), "9999"),
    (("eval-retrieval", P, "--run", "9999"), "9999"),
    (("eval-retrieval", P, "--shuffles", "0"), "shuffles"),
    (("eval-retrieval", P, "--label-set", "no-such-set"), "no-such-set"),
    (("noise-queue", P, "--label-set", "no-such-set"), "no-such-set"),
    (("noise-queue", P, "--label-set", "diagnosis", "--classifier", "9999"), "9999"),
    (("noise-queue", P, "--label-set", "diagnosis", "--cluster-run", "9999"), "9999"),
    (("noise-queue", P, "--label-set", "diagnosis", "-k", "0"), "-k"),
    # clinical fusion
    (("fuse", P, "9999", "--clinical", "age"), "9999"),
    (("fuse", P, "9999", "--clinical", "age,shoe_size"), "shoe_size"),
    (("ablation", P, "9999", "--clinical", "age"), "9999"),
    (("ablation", P, "9999", "--clinical", "age", "--scheme", "subsets"), "groups"),
    (("shap", P, "9999"), "9999"),
    # lesion detection
    (("train-det", P, "--size", "100"), "multiple of 32"),
    (("train-det", P, "--fpn-channels", "10"), "fpn"),
    (("train-det", P, "--epochs", "0"), "epoch"),
    (("train-det", P, "--batch-size", "0"), "batch size"),
    (("train-det", P, "--lr", "0"), "learning rate"),
    (("train-det", P, "--test-fraction", "1.5"), "hold-out fraction"),
    (("train-det", P, "--fp-budget", "-1"), "false-positive budget"),
    (("train-det", P, "--init", "run:9999"), "9999"),
    (("train-det", P, "--init", "/no/such/weights.pt"), "/no/such/weights.pt"),
    (("train-det", P, "--images", "99999"), "99999"),
    (("train-det", P, "--resume", "9999"), "9999"),
    (("detect", P), "no finished detector run"),
    (("detect", P, "9999"), "9999"),
    (("detect", P, "9999", "--min-score", "2"), "minimum score"),
    (("export-det", P, "9999", "OUT"), "9999"),
    # evaluation and the study report
    (("report", P, "--out", "OUT"), "no model run with hold-out results"),
    (("report", P, "--out", "OUT", "--runs", "9999"), "no model run 9999"),
    (("report", P, "--out", "OUT", "--runs", "x,y"), "run ids"),
    (("report", P, "--out", "OUT", "--rule", "sensitivity", "--target", "7"), "target"),
    (("operating-point", P, "9999"), "9999"),
    (("operating-point", P, "9999", "--rule", "sensitivity"), "target"),
    # reader studies
    (("reader-study", "analyze", P, "no-such-study"), "no such study"),
]


# Commands over many files report each file they skip and go on; their exit status says
# that something failed, and the skipped file's line names it (no "error:" line).
REPORTS = {"import"}


def _rows(project) -> tuple[int, int]:
    return len(project.models.list()), len(project.clusters.runs())


@pytest.mark.parametrize("args, words", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_gives_one_clear_line(phantom_project, tmp_path, capsys, args, words):
    before = _rows(phantom_project)
    image = str(phantom_project.images.ids()[0])
    swap = {P: str(phantom_project.root), "OUT": str(tmp_path / "out"), "DEMO": str(tmp_path / "demo"),
            "IMAGE": image}
    argv = [swap.get(a, a) for a in args]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors are one line too
        code = exc.code
    out = capsys.readouterr()
    text = out.out + out.err
    assert code not in (0, None), text
    assert "Traceback" not in text
    if args[0] in REPORTS:
        assert any(words in line and "no such file" in line for line in text.splitlines()), text
    else:
        errors = [line for line in out.err.splitlines() if line.startswith("mskstudio: error:")]
        assert len(errors) == 1, out.err
        assert words.lower() in errors[0].lower(), errors[0]
    assert _rows(phantom_project) == before, "a run row was written before the check"
