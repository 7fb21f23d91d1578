"""SHA-256 of the files ovatune writes, recorded when they are written and checked before they are read.

Checkpoints (``checksums.json`` beside ``state.pt`` and ``meta.json``), registered models' bundles
(``serving.json``) and exports (``manifest.json``) all record their files' hashes; a changed or
missing file is a ``TamperedFile`` naming it, never a model that loads with wrong weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CHECKSUMS_FILE = "checksums.json"  # a checkpoint's files and their SHA-256


class TamperedFile(RuntimeError):
    """A file does not match the SHA-256 recorded when it was written (or is missing).

    ``problem`` is what is wrong, naming the file; the message adds that nothing was loaded and
    what to do.
    """

    def __init__(self, problem: str, advice: str = ""):
        super().__init__(f"{problem}; refusing to load it. {advice}".rstrip() if advice else problem)
        self.problem = problem


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_files(
    directory: str | Path, hashes: dict[str, str], advice: str = "Export or promote the model again."
) -> None:
    """Refuse to go on if any file differs from its recorded SHA-256.

    Raises:
        TamperedFile: names the file and both hashes, then ``advice``.
    """
    for name, expected in hashes.items():
        path = Path(directory) / name
        actual = sha256(path) if path.is_file() else "missing"
        if actual != expected:
            raise TamperedFile(
                f"{path} does not match the SHA-256 recorded when it was written (expected {expected}, found {actual})",
                advice,
            )


def write_checksums(directory: str | Path, names: list[str]) -> None:
    """Record the SHA-256 of ``directory``'s files ``names`` in its ``checksums.json``."""
    directory = Path(directory)
    (directory / CHECKSUMS_FILE).write_text(json.dumps({name: sha256(directory / name) for name in names}, indent=1))


def verify_checksums(directory: str | Path, advice: str) -> None:
    """Check every file ``checksums.json`` names; a folder without one is not intact either.

    Raises:
        TamperedFile: the first file that is missing or changed (or the missing checksums.json).
    """
    path = Path(directory) / CHECKSUMS_FILE
    try:
        hashes = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise TamperedFile(f"{path} is missing or unreadable ({type(error).__name__}): the files beside it "
                           "cannot be checked", advice) from None  # fmt: skip
    check_files(directory, hashes, advice)
