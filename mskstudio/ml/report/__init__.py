"""The study report: cohort, selection flow, metrics with CIs, comparisons, checklist (HTML + CSV)."""
