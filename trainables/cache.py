"""The user's cache folder: what ovatune makes once per machine and library version, because it is
the same every time and slow to make (an empty MLflow store, scikit-learn's digits and splits)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def cache_folder() -> Path:
    """``$XDG_CACHE_HOME/ovatune``, else ``~/.cache/ovatune`` (not created here)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ovatune"


def scratch_beside(path: Path) -> Path:
    """A new empty file beside ``path`` for making it aside, then renaming it onto ``path``
    (``os.replace``): another process then sees the old file or the whole new one."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    return Path(name)


def cached_arrays(name: str, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``make()``'s arrays, kept in the cache folder as ``name``.npz: made once, then read in
    milliseconds. ``name`` must say all that the arrays depend on (library versions, a digest of the
    inputs). A file cut short or unreadable is made again; without a writable cache folder,
    ``make()`` runs every time."""
    path = cache_folder() / f"{name}.npz"
    try:
        with np.load(path) as cached:
            return dict(cached)
    except Exception:  # noqa: BLE001 - absent, cut short, not a zip: numpy raises each its own way
        pass
    arrays = make()
    scratch = None
    try:  # written aside, then renamed: another process may be reading or writing it
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = scratch_beside(path)
        with open(scratch, "wb") as file:
            np.savez(file, **arrays)
        os.replace(scratch, path)
    except OSError:
        if scratch is not None:
            scratch.unlink(missing_ok=True)
    return arrays
