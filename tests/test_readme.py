"""The README stays a short front door, and the links of the README and the docs resolve.

Settings, commands and modules are checked against the generated reference in test_docs.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

from iiifserver.cli import main

REPO = Path(__file__).resolve().parents[1]
README_PATH = REPO / "README.md"
README = README_PATH.read_text(encoding="utf-8")
MARKDOWN_FILES = [
    README_PATH,
    REPO / "CHANGELOG.md",
    *sorted((REPO / "docs").rglob("*.md")),
]
MAX_README_BYTES = 16 * 1024

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.M)


def test_readme_is_short() -> None:
    size = len(README.encode("utf-8"))
    assert size <= MAX_README_BYTES, f"README.md is {size} bytes; move detail into docs/ (limit {MAX_README_BYTES})"


def test_two_commands_exist_and_are_named() -> None:
    for script in ("scripts/serve-demo.sh", "scripts/test.sh"):
        assert script in README
        assert (REPO / script).stat().st_mode & 0o111, f"{script} is not executable"
    assert "scripts/test.sh" in (REPO / ".ci" / "run").read_text()


def test_scripts_named_in_readme_exist() -> None:
    named = set(re.findall(r"scripts/[\w.-]+", README))
    assert named
    for script in named:
        assert (REPO / script).is_file(), f"README names {script}, which does not exist"


def test_commands_named_in_readme_exist() -> None:
    named = re.findall(r"`iiifserver ([a-z-]+)(?: ([a-z-]+))?", README)
    assert len(named) >= 5
    for command, sub in named:
        assert command in main.commands, f"README names `iiifserver {command}`, which does not exist"
        group = main.commands[command]
        if sub and hasattr(group, "commands"):
            assert sub in group.commands, f"README names `iiifserver {command} {sub}`, which does not exist"


def _prose(text: str) -> str:
    """The text links are read from: fenced and inline code hold examples, not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


HTML_ANCHOR = re.compile(r'<a id="([^"]+)"></a>')


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    headings = {slugify(INLINE_CODE.sub(lambda m: m.group(0).strip("`"), h), "-") for h in HEADING.findall(text)}
    return headings | set(HTML_ANCHOR.findall(text))  # and <a id="..."></a> where a list item is the target


def _relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(path.read_text(encoding="utf-8"))) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for target in _relative_links(path):
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert not broken, f"{path.relative_to(REPO)}: " + "; ".join(broken)


def test_link_checker_sees_links_and_anchors() -> None:
    links = _relative_links(README_PATH)
    assert "docs/install.md" in links
    assert "docs/reference/settings.md" in links
    assert "model-map" not in _anchors(REPO / "docs" / "architecture.md")
    assert "module-map" in _anchors(REPO / "docs" / "architecture.md")


# Spelled in two parts so this guard does not itself name the folder it forbids.
OUTSIDE_FOLDER = "../" + "shared"
MACHINE_PATH = re.compile(r"(?<![\w.])/" + "work/")  # this machine's checkouts live there


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_paths_outside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert OUTSIDE_FOLDER not in text, f"{path.name} reaches a folder beside the repository"
    assert not MACHINE_PATH.search(text), f"{path.name} names a path of one machine"


def test_no_tracked_file_names_a_path_of_this_machine() -> None:
    """Results, scripts and configuration too: a clone elsewhere must not carry this machine's
    checkout folders (benchmark results name checkouts by commit instead)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    offenders = []
    for name in filter(None, listed.decode().split("\0")):
        path = REPO / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        if OUTSIDE_FOLDER in text or MACHINE_PATH.search(text):
            offenders.append(name)
    assert offenders == []
