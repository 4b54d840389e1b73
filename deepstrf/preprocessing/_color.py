"""Colour constants shared by the movie code (no imports, so worker processes stay light)."""

#: Luma weights of ITU-R BT.601 for (R, G, B); they sum to 1.
BT601_WEIGHTS = (0.299, 0.587, 0.114)
