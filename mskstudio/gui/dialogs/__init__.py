"""Dialogs: they ask; commands do."""
