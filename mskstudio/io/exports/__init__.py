"""Exports other tools read, and their imports: DICOM SEG and SR (highdicom), label tables, COCO."""
