"""The book builds strictly, exactly as readers type it, with math served from the build."""

import re
from pathlib import Path

import pytest

from hwr_utils.teaching import colab

pytestmark = pytest.mark.slow  # pytest -m "not slow" leaves it out

ROOT = Path(__file__).resolve().parents[1]


def test_strict_build_offline_math(built_book):
    result = built_book
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    html = ROOT / "book" / "_build" / "html"
    for page in html.glob("*.html"):
        text = page.read_text()
        scripts = re.findall(r'<script[^>]+src="([^"]+)"', text)
        assert not [s for s in scripts if "mathjax" in s.lower() and "//" in s], page.name
    intro = (html / "intro.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in intro
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert (html / "_static/mathjax/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff").is_file()
    # Each chapter's launch button opens it in Colab from the one address; the notebooks'
    # badges (remote images, for notebook readers) are not in the HTML.
    url, branch = colab.repository(ROOT / "book")
    for chapter in colab.chapters(ROOT / "book"):
        page = (html / f"{chapter.stem}.html").read_text()
        assert f'href="{colab.colab_link(url, branch, chapter.stem)}"' in page, chapter.stem
        assert "colab-badge.svg" not in page, chapter.stem
    # No inline script twice (Jupyter Book 1 registered sphinx-thebe's twice: a console error
    # in every browser; book/_ext/hwr_book.py removes the copy).
    for page in html.glob("*.html"):
        inline = re.findall(r"<script>(.*?)</script>", page.read_text(), flags=re.S)
        assert len(inline) == len(set(inline)), page.name
