"""Dockable views of the main window."""
