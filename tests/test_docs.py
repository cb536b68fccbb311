"""The commands in the README and the docs pages are commands this release accepts.

Every `landscape ...` and `python scripts/surface.py ...` line of a ```bash block in README.md and
docs/*.md (continuation lines joined, a launcher prefix such as `mpiexec -n 2` removed) is parsed
by the real argument parser: a renamed or removed option, a wrong choice or a subcommand that does
not exist fails here. Running them is the end-to-end tests' job; this checks what the pages say.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from landscape.cli import build_parser
from landscape.cli.options import Parser
from landscape.cli.surface import add_surface_arguments

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LAUNCHER = re.compile(r"^(?:mpiexec|mpirun)\s+(?:-{1,2}[\w-]+(?:[ =](?!python\b)\S+)?\s+)*")


def _bash_lines(page: Path) -> list[str]:
    """The command lines of a page's ```bash blocks, continuations joined, comments dropped."""
    out, block, pending = [], False, ""
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("```"):
            block = line.strip().startswith("```bash") and not block
            continue
        if not block:
            continue
        line = pending + line.split("  #")[0].rstrip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(line.strip())
    return out


def _commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for line in _bash_lines(page):
            line = LAUNCHER.sub("", line)
            if line.startswith(("landscape ", "python scripts/surface.py ")):
                found.append((page.name, line))
    return found


def _surface_script_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="surface.py")
    add_surface_arguments(parser)
    return parser


def test_the_pages_show_commands() -> None:
    pages = {page for page, _ in _commands()}
    assert {"README.md", "surfaces.md", "rendering.md", "curvature.md", "mpi.md"} <= pages


@pytest.mark.parametrize(("page", "line"), _commands())
def test_documented_command_parses(page: str, line: str) -> None:
    words = shlex.split(line.replace("{", "").replace("}", ""))
    if words[0] == "landscape":
        parser, argv = build_parser(), words[1:]
    else:
        parser, argv = _surface_script_parser(), words[2:]
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse's one-line refusal (or --help)
        raise AssertionError(f"{page}: `{line}` is refused by the parser") from e
    if words[0] == "landscape":
        assert getattr(args, "_run", None) is not None, f"{page}: `{line}` names no subcommand"
