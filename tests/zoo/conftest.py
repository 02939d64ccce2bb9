"""Every zoo test writes its figures and zoo weights under its own temporary folder, never into the
repository's ``detseg/zoo/figures.json`` or the user's ``~/.cache/detseg``."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def zoo_tmp(tmp_path, monkeypatch):
    """``$DETSEG_ZOO_FIGURES`` and ``$DETSEG_HOME`` in ``tmp_path``; returns the figures file's path."""
    figures = tmp_path / "figures.json"
    monkeypatch.setenv("DETSEG_ZOO_FIGURES", str(figures))
    monkeypatch.setenv("DETSEG_HOME", str(tmp_path / "home"))
    return figures
