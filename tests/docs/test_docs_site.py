"""The documentation site as a reader sees it: formulas as formulas, examples as code."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "kldiv"

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return out


def _pages(site: Path) -> list[Path]:
    pages = sorted(site.glob("**/index.html"))
    assert len(pages) >= 7, pages
    return pages


def test_no_page_shows_restructuredtext_math(site: Path) -> None:
    for page in _pages(site):
        text = page.read_text(encoding="utf-8")
        assert ".. math::" not in text, page
        assert ":math:`" not in text, page


def test_reference_renders_formulas_and_code(site: Path) -> None:
    text = (site / "reference" / "index.html").read_text(encoding="utf-8")
    # Every docstring formula becomes an arithmatex block that MathJax typesets.
    assert text.count('class="arithmatex"') >= 15
    # Doctest examples are highlighted code, not prose flattened into nested blockquotes.
    code_blocks = re.findall(r'<div class="highlight"><pre>.*?</pre></div>', text, flags=re.S)
    with_prompt = [block for block in code_blocks if "&gt;&gt;&gt;" in block]
    assert len(with_prompt) >= 10
    for quote in re.findall(r"<blockquote>.*?</blockquote>", text, flags=re.S):
        assert "&gt;&gt;&gt;" not in quote
        assert "import kldiv" not in quote


def test_reference_lists_every_public_distribution_helper(site: Path) -> None:
    text = (site / "reference" / "index.html").read_text(encoding="utf-8")
    for name in ("kldiv.distributions.kl", "kldiv.distributions.Mixture", "kldiv.kl_div"):
        assert f'id="{name}"' in text, name


def test_returns_section_is_one_description(site: Path) -> None:
    text = (site / "reference" / "index.html").read_text(encoding="utf-8")
    start = text.index('id="kldiv.kl_div"')
    section = text[start : text.index('id="kldiv.js_div"')]
    returns = section[section.index("Returns:") :]
    returns = returns[: returns.index("</table>")]
    assert returns.count('<tr class="doc-section-item">') == 1


def test_tables_show_no_escaped_pipes(site: Path) -> None:
    for page in _pages(site):
        cells = re.findall(r"<td>(.*?)</td>", page.read_text(encoding="utf-8"), flags=re.S)
        for cell in cells:
            assert "\\|" not in html.unescape(cell), (page, cell)


def test_mathjax_is_served_with_the_site(site: Path) -> None:
    # No CDN: a reader offline or behind a firewall still sees formulas.
    assert (site / "javascripts" / "mathjax" / "tex-svg.js").is_file()
    text = (site / "index.html").read_text(encoding="utf-8")
    assert "javascripts/mathjax/tex-svg.js" in text
    assert "unpkg.com" not in text
    assert "cdn.jsdelivr" not in text


def test_docstrings_use_markdown() -> None:
    """reST directives render as raw text on the site: formulas are $$ … $$, examples `Examples:`."""
    offenders = []
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for pattern in (
            r"\.\. math::",
            r":math:`",
            r"^\s*Example:\s*$",
            r":(func|class|meth|attr):`",
        ):
            if re.search(pattern, text, flags=re.M):
                offenders.append(f"{path.relative_to(SOURCE)}: {pattern}")
    assert not offenders, offenders
