"""Reading the outside world: DICOM, clinical tables, masks, and the synthetic phantoms."""
