"""mskstudio: a workstation for human-in-the-loop deep learning on musculoskeletal radiographs."""

__version__ = "0.1.0"
