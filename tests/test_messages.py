"""What the library says goes through `landscape.system.messages`; nothing below the CLI prints."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from landscape.system.messages import LOGGER, note, say, to_console, warn

PACKAGE = Path(__file__).resolve().parents[1] / "landscape"


def _print_calls(path: Path) -> list[int]:
    """Lines of `print(...)` calls in a module (comments and docstrings do not count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.lineno for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    ]


def test_no_library_module_outside_the_cli_calls_print() -> None:
    found = {
        str(p.relative_to(PACKAGE.parent)): lines
        for p in sorted(PACKAGE.rglob("*.py"))
        if "cli" not in p.relative_to(PACKAGE).parts[:1] and (lines := _print_calls(p))
    }
    assert found == {}, f"print() in library modules (use landscape.system.messages): {found}"
    assert _print_calls(PACKAGE / "cli" / "edge.py"), "the check must see print() calls where they are"


def test_the_console_prints_bare_lines_on_their_streams_and_then_stops(capsys: pytest.CaptureFixture[str]) -> None:
    with to_console():
        say("wrote s.h5: 25 points")
        note("rank layout")
        warn("warning: bf16 slower")
    out, err = capsys.readouterr()
    assert out == "wrote s.h5: 25 points\n"
    assert err == "rank layout\nwarning: bf16 slower\n"
    log = logging.getLogger(LOGGER)
    assert not log.handlers and log.propagate  # undone on leaving the block
    say("after")
    assert capsys.readouterr().out == ""
