"""Standard JSON out of detseg's results: one rule for every file detseg writes.

    path.write_text(dumps({"AP": float("nan"), "size": (3, 224, 224)}))   # {"AP": null, "size": [3, ...]}

Python's ``json`` writes NaN and infinity as ``NaN`` / ``Infinity``, which are not JSON (browsers, ``jq``
and most readers refuse them): :func:`jsonable` makes them ``null``. A leaf: imports nothing of detseg.
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Any


def jsonable(value: Any) -> Any:
    """A copy of ``value`` in plain JSON values: NaN, inf and -inf as None, tuples and sets as lists,
    dict keys as text, paths as text, numpy scalars and arrays as Python numbers and lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, PurePath):
        return str(value)
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):  # without importing numpy
        return jsonable(value.tolist())
    return value


def dumps(value: Any, indent: int | None = 1) -> str:
    """``json.dumps`` of :func:`jsonable` ``(value)``, refusing anything left that is not JSON."""
    return json.dumps(jsonable(value), indent=indent, allow_nan=False)
