"""Errors for bad input data, and a small helper that either raises or collects them."""

from __future__ import annotations

import warnings


class DataError(ValueError):
    """Bad input data. The message names the file, the entry (annotation id, line) and what is wrong."""

    def __init__(self, file: object, what: str, entry: str | None = None, image: object = None):
        self.file = str(file)
        self.entry = entry
        self.what = what
        self.image = image  # the image id (COCO) or file stem the problem belongs to, when known
        where = f"{self.file}: {entry}" if entry else self.file
        super().__init__(f"{where}: {what}")


def report(problems: list[DataError] | None, error: DataError) -> None:
    """Raise ``error``, or append it to ``problems`` when the caller collects problems instead."""
    if problems is None:
        raise error
    problems.append(error)


def warn_skipped(problems: list[DataError], what: str) -> None:
    """One warning for the samples skipped with ``skip_bad=True``: the count and the first reasons."""
    if not problems:
        return
    shown = "; ".join(str(p) for p in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    warnings.warn(f"skipped {len(problems)} bad {what}: {shown}{more}", stacklevel=3)
