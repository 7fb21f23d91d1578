"""How an error becomes the one line a user reads: ``<Type>: <first line of its message>``."""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message ('' for an empty one)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def one_line(error: BaseException) -> str:
    """``<Type>: <first line>``, what a per-loss failure or the CLI's safety net reports."""
    return f"{type(error).__name__}: {first_line(error)}"
