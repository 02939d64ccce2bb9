"""The README stays a newcomer's page (at most 150 lines and 25 decimal numbers), states only recorded
figures, and every relative link in README.md, DEVELOPING.md and docs/ resolves, anchors included."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from detseg.zoo.measurements import load_measurements, recorded_values

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, ROOT / "DEVELOPING.md", *sorted((ROOT / "docs").glob("*.md"))]
DECIMAL = re.compile(r"\d+\.\d+")


def test_readme_stays_within_its_limits():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    assert len(DECIMAL.findall(text)) <= 25, DECIMAL.findall(text)


def test_readme_setup_is_the_two_ci_commands():
    assert '```bash\npip install -e ".[dev]"\npython -m pytest -q\n```' in README.read_text()


def _stated_figures(text: str) -> list[str]:
    """Decimal numbers in prose and in code comments, not in commands (``min_scale=0.1`` is an option)."""
    found, in_code = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            line = line.partition("#")[2]
        found += DECIMAL.findall(re.sub(r"`[^`]*`", "", line))
    return found


def test_readme_states_only_recorded_figures():
    recorded = {n for value in recorded_values(load_measurements()) for n in DECIMAL.findall(value)}
    stated = _stated_figures(README.read_text())
    assert stated, "the README states no figure"
    assert not [n for n in stated if n not in recorded], "not in detseg/zoo/measurements.json"


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+\s+(.*)$", page.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"
