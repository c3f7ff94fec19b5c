"""Reader studies in the GUI: the blinded reading window, the reader chooser, the analysis page."""
