"""Lesion detection: FCOS on the project boxes, fold ensemble + TTA, lesion- and study-level metrics."""
