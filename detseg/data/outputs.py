"""Outputs that appear whole or not at all: write into a hidden staging path, move in on success.

A command that fails half-way (bad input found at sample 7 of 8) then leaves nothing behind, and a
failed run never overwrites a good earlier output.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def staged(target: str | Path, folder: bool | None = None) -> Iterator[Path]:
    """Yield a path to write instead of ``target`` (a file, or a folder when ``folder`` or when
    ``target`` has no suffix); on success it replaces ``target`` (a folder's files are moved into
    ``target``, which may already hold others), on an exception it is deleted.

    >>> with staged("out/labels") as tmp:   # doctest: +SKIP
    ...     write_files(tmp)                # out/labels gets them only if this returns
    """
    target = Path(target)
    folder = target.suffix == "" if folder is None else folder
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    tmp = tmp_dir if folder else tmp_dir / target.name
    try:
        yield tmp
        if not folder:
            if tmp.exists():
                os.replace(tmp, target)
        elif tmp.exists():
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted(tmp.rglob("*")):
                dest = target / path.relative_to(tmp)
                if path.is_dir():
                    dest.mkdir(exist_ok=True)
                else:
                    os.replace(path, dest)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
