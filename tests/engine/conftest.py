"""Lets the engine tests import their toy models and data (engine_toys) when run one file at a time."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
