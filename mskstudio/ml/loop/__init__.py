"""The whole loop as one job (the demo without a display)."""
