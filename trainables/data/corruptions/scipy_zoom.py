"""The published ``clipped_zoom`` along one axis as a matrix, for zoom_blur and snow.

Reproduces the published code's crop of the centre, its ``scipy.ndimage.zoom(order=1)`` (linear
interpolation, output size round(crop · zoom), corners aligned) and its trim back to the image size.

Tested through zoom_blur against the published code's outputs (``tests/test_corruptions_fidelity.py``:
within 1 grey level at every intensity) and through snow by its mean change per intensity.
"""

from __future__ import annotations

import numpy as np
import torch


def clipped_zoom_matrix(size: int, zoom: float) -> torch.Tensor:
    """(size, size) float64 matrix M with ``M @ row`` = the published ``clipped_zoom`` along one axis:
    crop the centre ceil(size / zoom), linearly interpolate it up as ``scipy.ndimage.zoom(order=1)``
    (output round(crop · zoom), corners aligned), then trim the centre ``size`` back out."""
    crop = int(np.ceil(size / zoom))
    top = (size - crop) // 2
    out = int(round(crop * zoom))
    position = torch.arange(out, dtype=torch.float64) * (crop - 1) / (out - 1)  # (out,) in crop pixels
    low = position.floor().long().clamp(max=crop - 1)
    frac = position - low
    interpolate = torch.zeros(out, size, dtype=torch.float64)
    interpolate[torch.arange(out), top + low] = 1 - frac
    high = (low + 1).clamp(max=crop - 1)
    interpolate[torch.arange(out), top + high] += frac
    trim = (out - size) // 2
    return interpolate[trim : trim + size]  # (size, size)
