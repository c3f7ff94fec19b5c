"""Reader-study setup and reading sessions: seeded orders, blinding, resume, washout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest

from mskstudio.ml.readers.session import Case, ReadingSession, WashoutPending
from mskstudio.ml.readers.setup import create_study, reading_order


def region_set(project) -> list[str]:
    """A 'region' label set whose classes are the three commonest phantom truth regions."""
    counts = project.labels.counts(project.labels.find_label_set("truth:region"))
    names = sorted(counts, key=lambda n: (-counts[n], n))[:3]
    ls = project.labels.label_set("region")
    for n in names:
        project.labels.class_id(ls, n)
    return names


def make_study(project, **overrides) -> int:
    names = region_set(project)
    params = {"name": "s1", "label_set": "region", "truth_set": "truth:region", "classes": ",".join(names),
              "images": "all", "readers": "ann,bob,cid", "arms": "image,clinical", "seed": 5}
    params.update(overrides)
    return create_study(project, params)


def orders(project, study_id) -> dict[tuple[str, int], list[int]]:
    out = {}
    for arm in project.readers.arms(study_id):
        for reader in project.readers.study_readers(study_id):
            out[(reader["name"], arm["position"])] = [
                int(r["image_id"]) for r in project.readers.order(arm["id"], reader["id"])]
    return out


def test_order_is_reproducible_from_the_seed(phantom_project):
    p = phantom_project
    sid = make_study(p)
    first = orders(p, sid)
    cases = p.readers.case_images(sid)
    truth_set = p.labels.find_label_set("truth:region")
    names = {r.id: r.name for r in p.labels.classes(truth_set)}
    in_classes = {i for i, c in p.labels.effective(truth_set).items() if names[c] in region_set(p)}
    assert sorted(cases) == sorted(in_classes) and len(cases) >= 15
    # every reader reads every case once per arm, each in their own order
    assert all(sorted(o) == sorted(cases) for o in first.values())
    assert len({tuple(o) for o in first.values()}) == len(first)
    # the same seed gives the same orders (a second study), another seed others
    again = orders(p, make_study(p, name="s2"))
    assert again == first
    other = orders(p, make_study(p, name="s3", seed=6))
    assert all(other[k] != first[k] for k in first)
    # an order depends on seed, arm and the reader's name only
    assert first[("bob", 1)] == reading_order(cases, seed=5, arm_position=1, reader="bob")
    alone = orders(p, make_study(p, name="s4", readers="bob"))
    assert alone[("bob", 0)] == first[("bob", 0)]


def test_sample_per_class_and_bad_input(phantom_project):
    p = phantom_project
    sid = make_study(p, images="sample:2-per-class")
    assert len(p.readers.case_images(sid)) == 6
    with pytest.raises(ValueError, match="--classes: nope"):
        make_study(p, name="x", classes="nope")
    with pytest.raises(ValueError, match="--arms: unknown arm"):
        make_study(p, name="x", arms="image,ai")
    with pytest.raises(ValueError, match="model run '99'"):
        make_study(p, name="x", arms="assisted:99")
    with pytest.raises(ValueError, match="exists already"):
        make_study(p)


def test_session_is_blinded_to_truth_model_and_other_readers(phantom_project):
    p = phantom_project
    sid = make_study(p)
    s_ann = ReadingSession(p, sid, "ann")
    first = s_ann.current()
    assert first.arm == "image" and not first.clinical and first.prediction is None and first.heatmap is None
    s_ann.answer(1, seconds=2.0)
    # a Case carries no truth, no other reader's read and no model output in the image arm
    assert {f.name for f in fields(Case)} == {
        "read_id", "image_id", "index", "total", "arm", "arm_position", "keys", "clinical", "labs",
        "prediction", "predicted", "heatmap"}
    bob = ReadingSession(p, sid, "bob")
    assert bob.remaining == len(p.readers.case_images(sid))  # ann's read is not bob's
    # the clinical arm shows age/sex/site/position and labs, never the diagnosis or report
    for _ in range(bob.remaining):
        bob.answer(2, seconds=1.0)
    case = bob.current()
    assert case.arm == "clinical"
    assert not {"diagnosis", "dignity", "diagnosis_source", "report"} & set(case.clinical)
    assert case.clinical and set(case.clinical) <= {"age_years", "sex", "site", "position"}
    # a study can leave out a field that would give the answer away (here the site)
    sid2 = make_study(p, name="no-site", readers="bob", arms="clinical", clinical_fields="age_years,sex")
    assert set(ReadingSession(p, sid2, "bob").current().clinical) <= {"age_years", "sex"}
    with pytest.raises(ValueError, match="--clinical-fields: diagnosis cannot be shown"):
        make_study(p, name="x", clinical_fields="age_years,diagnosis")
    with pytest.raises(ValueError, match="not a reader"):
        ReadingSession(p, sid, "eve")


def test_killed_session_resumes_at_the_next_unread_case(phantom_project):
    p = phantom_project
    sid = make_study(p)
    expected = orders(p, sid)[("cid", 0)]
    script = textwrap.dedent(f"""
        import os, signal
        from mskstudio.store import Project
        from mskstudio.ml.readers.session import ReadingSession
        p = Project.open({str(p.root)!r})
        s = ReadingSession(p, {sid}, "cid")
        for k in range(5):
            s.answer(1 + k % 3, seconds=1.5, confidence=0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), timeout=120)
    assert proc.returncode == -signal.SIGKILL
    resumed = ReadingSession(p, sid, "cid")
    assert resumed.current().image_id == expected[5] and resumed.current().index == 5
    reads = [r for r in p.readers.reads(sid) if r["reader"] == "cid"]
    assert [r["image_id"] for r in reads] == expected[:5]
    assert all(r["seconds"] == 1.5 and r["confidence"] == 0.5 for r in reads)


def test_next_arm_waits_for_the_washout(phantom_project):
    p = phantom_project
    sid = make_study(p, readers="ann", washout_days=14)
    s = ReadingSession(p, sid, "ann")
    n = s.remaining
    for _ in range(n - 1):
        s.answer(1, seconds=1.0)
    with pytest.raises(WashoutPending, match="opens for ann"):
        s.answer(1, seconds=1.0)
    later = lambda: datetime.now(UTC) + timedelta(days=15)  # noqa: E731
    s2 = ReadingSession(p, sid, "ann", now=later)
    assert s2.current().arm == "clinical" and s2.remaining == n


def test_cli_readers_create_list_and_read_errors(phantom_project, capsys):
    import json

    from mskstudio.cli import main

    p = phantom_project
    names = region_set(p)
    root = str(p.root)
    assert main(["readers", root, "--set", "dr_a", "--role", "resident", "--years", "2"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"name": "dr_a", "role": "resident", "years": 2.0} in listed
    assert main(["reader-study", "create", root, "--name", "cli", "--label-set", "region", "--truth",
                 "truth:region", "--classes", ",".join(names), "--images", "sample:2-per-class",
                 "--readers", "dr_a,dr_b", "--arms", "image,clinical", "--washout-days", "0", "--seed", "3"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["cases"] == 6 and len(created["progress"]) == 4
    assert main(["reader-study", "list", root]) == 0
    assert [s["name"] for s in json.loads(capsys.readouterr().out)] == ["cli"]
    # bad input: one line naming the field, no traceback, nothing written
    assert main(["reader-study", "create", root, "--name", "bad", "--label-set", "region",
                 "--readers", "x", "--images", "sample:zero-per-class"]) == 1
    err = capsys.readouterr().err
    assert "sample:zero-per-class" in err and "Traceback" not in err
    assert p.readers.study("bad") is None
    assert main(["reader-study", "read", root, "cli", "--reader", "nobody"]) == 1
    assert "not a reader of study 'cli'" in capsys.readouterr().err
