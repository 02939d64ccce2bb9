"""docs/figures.md is generated from the recorded measurements (detseg/zoo/measurements.json): the committed
page must equal what ``detseg zoo figures`` writes, and every record says how it was measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detseg.cli import main
from detseg.zoo.measurements import PACKAGE_MEASUREMENTS, load_measurements, render_figures_md

ROOT = Path(__file__).resolve().parents[2]
FIGURES_MD = ROOT / "docs" / "figures.md"


def test_committed_figures_page_is_what_its_command_generates():
    assert FIGURES_MD.read_text() == render_figures_md(load_measurements()), (
        "docs/figures.md is stale: run `detseg zoo figures --write docs/figures.md`")


def test_every_record_has_its_splits_command_and_provenance():
    data = load_measurements()
    assert len(data["figures"]) >= 70  # every figure of the README's old table and paragraphs
    for rec in data["figures"]:
        assert len(rec["commit"]) == 40 and int(rec["commit"], 16) >= 0, rec["id"]
        assert rec["date"][:4] == "2026", rec["id"]
        assert isinstance(rec["value"], str), rec["id"]  # as reported: "0.870" keeps its last digit
    retired = [r for r in data["figures"] if r["group"] == "camvid-retired"]
    assert retired and all("neighbouring" in r["scored_on"] for r in retired)
    group = next(g for g in data["groups"] if g["id"] == "camvid-retired")
    assert "retired split (neighbouring frames, misleading)" in group["title"]


def test_zoo_figures_command_writes_and_checks_the_page(tmp_path, capsys):
    page = tmp_path / "figures.md"
    assert main(["zoo", "figures", "--write", str(page)]) == 0
    assert page.read_text() == FIGURES_MD.read_text()
    assert main(["zoo", "figures", "--check", str(page)]) == 0
    page.write_text(page.read_text().replace("0.870", "0.871", 1))
    assert main(["zoo", "figures", "--check", str(page)]) == 1
    assert "differs" in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    (lambda d: d["figures"][0].pop("command"), "missing command"),
    (lambda d: d["figures"][0].update(group="nowhere"), "unknown group"),
    (lambda d: d["figures"].append(dict(d["figures"][0])), "duplicate id"),
    (lambda d: d["figures"][0].update(seeds=[0, 1], per_seed=["0.1"]), "per-seed values"),
])
def test_bad_records_are_refused_with_the_record_named(tmp_path, change, message):
    data = json.loads(PACKAGE_MEASUREMENTS.read_text())
    change(data)
    path = tmp_path / "measurements.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        load_measurements(path)
