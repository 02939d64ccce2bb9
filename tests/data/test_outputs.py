"""detseg.data.outputs.staged: an output appears whole on success and not at all on failure."""

from __future__ import annotations

import pytest

from detseg.data.outputs import staged


def test_a_folder_appears_only_when_the_writer_finishes(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(ValueError), staged(target) as tmp:
        (tmp / "a.txt").write_text("1")
        raise ValueError("bad sample 2")
    assert not target.exists() and list(tmp_path.iterdir()) == []  # no staging folder left either
    (target / "keep").mkdir(parents=True)
    (target / "keep" / "old.txt").write_text("old")
    with staged(target) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("2")
        (tmp / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1" and (target / "sub" / "b.txt").read_text() == "2"
    assert (target / "keep" / "old.txt").read_text() == "old"  # what was there stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_file_is_replaced_whole_or_left_as_it_was(tmp_path):
    target = tmp_path / "gt.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), staged(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert target.read_text() == "old"
    with staged(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["gt.json"]
