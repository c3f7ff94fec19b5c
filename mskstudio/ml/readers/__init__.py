"""Reader studies: setup, reading sessions, analysis (Qt-free)."""
