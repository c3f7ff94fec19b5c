"""File menu entries for exchanging annotations with other tools and projects."""
