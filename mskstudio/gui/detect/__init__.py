"""The lesion detector in the GUI: predicted boxes on the viewer, accept / reject, Find lesions."""
