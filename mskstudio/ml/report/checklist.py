"""A pre-filled TRIPOD+AI / CLAIM checklist: which report section answers which item.

Items are paraphrased short titles (TRIPOD+AI 2024, Collins et al., BMJ; CLAIM 2024
update, Tejani et al., Radiology: AI), not the official wording: the authors check
each against the published list.  ``where`` names a section anchor of the report
(``#cohort``, ``#flow`` …); items the software cannot know ("authors") are left for
the authors, and the report says so instead of pretending.
"""

from __future__ import annotations

from typing import Any

# (guideline item, short title, section anchor or "authors", what the report gives)
ITEMS: tuple[tuple[str, str, str, str], ...] = (
    ("TRIPOD+AI 1 / CLAIM 1", "Title: identify the study as developing / evaluating a model", "authors",
     "to write"),
    ("TRIPOD+AI 5 / CLAIM 7", "Data sources, centres, dates", "#cohort",
     "centres and devices in the cohort table"),
    ("TRIPOD+AI 6a / CLAIM 8", "Eligibility criteria of participants and images", "#flow",
     "selection flow with the counts left out at each step and why"),
    ("TRIPOD+AI 7 / CLAIM 9", "Data pre-processing, quality checks", "#runs",
     "input size and normalisation in each run's parameters; exclusions by flag in the flow"),
    ("TRIPOD+AI 8 / CLAIM 14-16", "Outcome / reference standard and how it was established", "#cohort",
     "diagnosis source (histology / tumour board / follow-up) in the cohort table"),
    ("CLAIM 17", "Annotation: who labelled, with which tool, inter-reader variability", "#readers",
     "label provenance is stored per label; reader-study results when present"),
    ("TRIPOD+AI 9 / CLAIM 21", "Sample size and how it was arrived at", "#flow",
     "n at each step; n of every figure beside it"),
    ("TRIPOD+AI 10 / CLAIM 18", "Missing data and how they were handled", "#cohort",
     "missing values counted per variable, never imputed"),
    ("TRIPOD+AI 12a / CLAIM 19-20", "Data partitions: train / validation / test, at patient level", "#runs",
     "patient-level split, k folds and hold-out kind per run (split hash in Reproducibility)"),
    ("TRIPOD+AI 12c / CLAIM 22-24", "Model: architecture, initialisation, training details", "#runs",
     "architecture, initialisation, epochs, learning rate, augmentation per run"),
    ("TRIPOD+AI 12e / CLAIM 26", "Performance measures with confidence intervals", "#runs",
     "accuracy, sensitivity, specificity, PPV, NPV (Wilson CIs), AUC (bootstrap / DeLong CIs)"),
    ("TRIPOD+AI 12e / CLAIM 27", "Calibration", "#calibration",
     "reliability diagram, Brier score, ECE; temperature fitted on validation folds"),
    ("CLAIM 28", "Operating point and how it was chosen", "#calibration",
     "threshold chosen on out-of-fold validation data, reported on the hold-out"),
    ("TRIPOD+AI 12f / CLAIM 29", "Statistical comparison of models", "#comparisons",
     "DeLong's test for paired AUCs, McNemar, Holm-adjusted p-values"),
    ("TRIPOD+AI 12g / CLAIM 30", "Subgroup / fairness analyses", "#subgroups",
     "per-group n with CIs and forest plots"),
    ("CLAIM 31", "Explainability / saliency methods", "#gradcam", "Grad-CAM examples when cached"),
    ("TRIPOD+AI 20 / CLAIM 32", "Participant flow and characteristics", "#cohort",
     "cohort table per class and per test set"),
    ("TRIPOD+AI 23 / CLAIM 33-35", "Model performance on the test set(s)", "#runs",
     "hold-out (never trained on) per run"),
    ("CLAIM 36", "Failure analysis: examples of incorrect results", "#runs",
     "confusion matrix per run; galleries in the Dashboard"),
    ("TRIPOD+AI 18e", "Comparison with human readers", "#readers", "reader-study results when present"),
    ("TRIPOD+AI 27 / CLAIM 40-41", "Code and model availability, software version", "#reproducibility",
     "software version, git description, run ids, split hashes"),
    ("TRIPOD+AI 3-4, 24-26", "Background, objectives, interpretation, limitations", "authors", "to write"),
    ("TRIPOD+AI 28-30 / CLAIM 42", "Ethics, funding, conflicts, registration", "authors", "to write"),
)


def checklist(present: set[str]) -> list[dict[str, Any]]:
    """Checklist rows; an item pointing to a section the report lacks says so."""
    out = []
    for item, title, where, what in ITEMS:
        if where == "authors":
            status = "for the authors"
        elif where.lstrip("#") in present:
            status = "answered in the report"
        else:
            status = "not in this report"
        out.append({"item": item, "title": title, "where": where, "what": what, "status": status})
    return out


def checklist_rows(items: list[dict[str, Any]]) -> list[list[Any]]:
    return [["item", "topic", "where", "what the report gives", "status"],
            *[[r["item"], r["title"], r["where"], r["what"], r["status"]] for r in items]]
