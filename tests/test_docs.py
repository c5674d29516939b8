"""The documentation points only at files that are in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    missing = [target for target in LINK.findall(text)
               if "://" not in target and not target.startswith("mailto:") and not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


@pytest.mark.parametrize("page", PAGES + sorted(ROOT.glob("hwprofiles/*.yaml")) + sorted(ROOT.glob("workloads/*.yaml")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_cites_material_outside_the_repository(page):
    assert "../shared" not in page.read_text(encoding="utf-8")


def test_the_prune_pages_python_example_names_files_that_exist():
    text = (ROOT / "docs/prune.md").read_text(encoding="utf-8")
    example = text[text.index("## Python API"):]
    named = re.findall(r'"([\w./-]+\.ya?ml)"', example)
    assert named and all((ROOT / name).is_file() for name in named), named
