"""The documentation's examples run: every ```python block of README.md and docs/*.md,
page by page in one namespace (a block may use the names of the blocks above it), in a
temporary folder. Blocks that need a GPU are skipped where there is none."""
import re
import textwrap
from pathlib import Path

import pytest

import gengrad

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)


def examples(page):
    return [textwrap.dedent(code) for _, code in FENCE.findall(page.read_text())]


@pytest.mark.parametrize("page", [p for p in PAGES if examples(p)], ids=lambda p: p.name)
def test_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for number, code in enumerate(examples(page), start=1):
        if 'backend="cuda"' in code and gengrad.cuda.unavailable():
            pytest.skip(f"needs a GPU: {gengrad.cuda.unavailable()}")
        for module in ("torch", "jax", "sklearn"):
            if re.search(rf"\bimport {module}\b|{module}\.", code):
                pytest.importorskip(module)
        exec(compile(code, f"{page.name}, example {number}", "exec"), namespace)  # noqa: S102


def test_every_page_is_in_the_sites_table_of_contents():
    index = (ROOT / "docs" / "index.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert page.stem == "index" or f"\n{page.stem}\n" in index, page.name
