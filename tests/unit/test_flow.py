"""The selection flow counts what the store holds: failures by reason, discarded clusters,
excluded images by flag, labelled images; the SVG is deterministic and names every count."""

from __future__ import annotations

import numpy as np


def test_selection_flow_on_a_phantom_project(phantom_project, tmp_path):
    from mskstudio.ml.report.flow import flow_rows, flow_svg, selection_flow

    p = phantom_project
    ids = p.images.ids()
    n = len(ids)
    p.jobs.record_failure(None, "/x/a.dcm", "not DICOM")
    p.jobs.record_failure(None, "/x/b.dcm", "not DICOM")
    p.jobs.record_failure(None, "/x/c.dcm", "cannot decode pixels")
    assign = np.arange(n) % 3
    run = p.clusters.create_run(image_ids=ids, assign=assign, distance=np.zeros(n),
                                member_xy=np.zeros((n, 2)))
    cluster0 = next(c["id"] for c in p.clusters.clusters(run) if c["idx"] == 0)
    p.clusters.discard(cluster0, "region")
    discarded = {i for i, a in zip(ids, assign, strict=True) if a == 0}
    attrs = p.cohort.attributes()
    kept = [i for i in ids if i not in discarded]
    p.images.set_flag(kept[0], "excluded", 1)
    p.images.set_flag(kept[0], "is_screenshot", 1)
    p.images.set_flag(kept[1], "excluded", 1)
    p.images.set_flag(min(discarded), "excluded", 1)  # already out with its cluster: counted once
    flow = selection_flow(p)
    steps = {s["label"]: s for s in flow["steps"]}
    assert steps["files found"]["n"] == n + 3
    assert steps["imported"]["out"] == [("failed: not DICOM", 2), ("failed: cannot decode pixels", 1)]
    assert steps["kept after cluster review"]["n"] == n - len(discarded)
    assert steps["eligible"]["n"] == n - len(discarded) - 2
    second = "burned-in annotation" if attrs[kept[1]]["burned_in_annotation"] else "by the user"
    assert dict(steps["eligible"]["out"]) == {"excluded: screenshot": 1, f"excluded: {second}": 1}
    svg = flow_svg(flow)
    assert svg == flow_svg(selection_flow(p)) and svg.startswith("<svg")
    for s in flow["steps"]:
        assert f"n = {s['n']:,}" in svg
    assert "failed: not DICOM: 2" in svg
    assert svg.count("<rect") == len(flow["steps"]) + sum(bool(s["out"]) for s in flow["steps"])
    rows = flow_rows(flow)
    assert rows[0] == ["step", "n", "left out", "n left out"]
    (tmp_path / "flow.svg").write_text(svg)
