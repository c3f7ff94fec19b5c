"""Pixel and mask primitives (numpy and PIL only), below the store in the layers.

The store encodes, decodes and measures masks when it writes them; those primitives
live here so the store never reaches up into ``io`` or ``ml``.
"""
