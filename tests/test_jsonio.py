"""detseg.jsonio: every file detseg writes is standard JSON, NaN and infinities included."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from detseg.jsonio import dumps, jsonable


def test_nan_and_both_infinities_become_null_everywhere():
    value = {"AP": math.nan, "top": math.inf, "low": -math.inf, "rows": [(1.5, math.nan)], 3: {math.inf}}
    assert jsonable(value) == {"AP": None, "top": None, "low": None, "rows": [[1.5, None]], "3": [None]}
    text = dumps(value)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["rows"] == [[1.5, None]]


def test_paths_and_numpy_values_become_plain_json():
    value = {"path": Path("runs/a"), "n": np.int64(3), "x": np.float32(np.inf), "a": np.array([0.5, np.nan])}
    assert jsonable(value) == {"path": "runs/a", "n": 3, "x": None, "a": [0.5, None]}
    assert json.loads(dumps(value, indent=None)) == {"path": "runs/a", "n": 3, "x": None, "a": [0.5, None]}
