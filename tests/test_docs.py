"""The documentation a newcomer follows: every relative link of the README and the docs pages
resolves inside the repository, every docs page the code names exists, every section of
docs/method.md the code cites is there, and the README stays one screen long."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE = [p for d in ("deeplab", "scripts", "bash_files") for p in sorted((ROOT / d).rglob("*"))
        if p.suffix in (".py", ".sh")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    text = page.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert page.name != "README.md" or links  # the README links its pages
    for link in links:
        if re.match(r"[a-z]+://", link) or link.startswith("#"):
            continue
        target = (page.parent / link.split("#")[0]).resolve()
        assert target.exists(), f"{page.relative_to(ROOT)}: link to {link}, which is not in the repository"


def test_docs_pages_named_in_the_code_exist():
    named = {}
    for path in CODE:
        for m in re.findall(r"\bdocs/[\w./-]+\.md\b", path.read_text(errors="replace")):
            named.setdefault(m, path)
    assert "docs/method.md" in named
    for page, path in named.items():
        assert (ROOT / page).is_file(), f"{path.relative_to(ROOT)} names {page}, which is not in the repository"


def test_cited_method_sections_exist():
    headings = set(re.findall(r"^## (\d+)\. ", (ROOT / "docs" / "method.md").read_text(), re.M))
    cited = set()
    for path in CODE:
        for first, last in re.findall(r"docs/method\.md sections? (\d+)(?:-(\d+))?",
                                      path.read_text(errors="replace")):
            cited.update(str(n) for n in range(int(first), int(last or first) + 1))
    assert cited and cited <= headings, sorted(cited - headings)


def test_readme_is_one_screen():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_ci_runs_the_readme_test_line_and_nothing_else():
    """.ci/run's one command is the README's test line (install included), so the line a newcomer
    copies is the line CI proves."""
    readme = (ROOT / "README.md").read_text()
    line = next(ln.strip() for ln in readme.splitlines() if ln.strip().endswith("&& pytest"))
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.lstrip().startswith("#")]
    assert ci[-1] == line
    assert all(c.startswith(("set ", "cd ")) for c in ci[:-1]), ci[:-1]
    assert "install_browser.sh" in line and "label_studio.py install" in line


def test_every_flag_has_help_text():
    """Every command-line flag of the scripts and modules says what it is (`--help`)."""
    import ast

    missing = []
    for path in CODE + sorted((ROOT / "deeplab").rglob("*.py")):
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" \
                    and not any(k.arg == "help" for k in node.keywords):
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not missing, missing
