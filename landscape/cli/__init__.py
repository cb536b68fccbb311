"""The `landscape` command: parse, call one library function, print.

Heavy imports (torch, h5py, matplotlib) happen inside the subcommand handlers, so that
`landscape --help` and `--version` answer at once. The options the commands share are in
`landscape.cli.options`, the process edge (one line for any error) in `landscape.cli.edge`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from .._version import __version__
from . import basic, curves, demo, hessian, render, surface
from .edge import lenient_streams, run_command
from .options import Parser, thread_settings

__all__ = ["main", "build_parser", "run_parsed", "entry"]


Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


# the command modules, in the order `--help` lists them; each has COMMANDS = [(name, help, add, run)]
_COMMAND_MODULES = (basic, surface, curves, render, hessian, demo)


def _commands() -> list[Command]:
    """(name, help, add-arguments, run) for every subcommand."""
    return [command for module in _COMMAND_MODULES for command in module.COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="landscape",
        description="Loss landscapes of trained neural networks (Li et al., NeurIPS 2018).",
        epilog="Example: landscape train --model resnet20 --data digits",
    )
    parser.add_argument("--version", action="version", version=f"landscape {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, help_text, add, run in _commands():
        p = sub.add_parser(name, help=help_text.splitlines()[0], description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    with lenient_streams():  # a bad option naming a file `λ.pt` on an ASCII terminal
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        return run_parsed(f"landscape {args.command}", args)


def run_parsed(prog: str, args: argparse.Namespace) -> int:
    """Run the parsed command `args._run(args)` at the process edge (`landscape.cli.edge`): its
    threads first, before torch is imported (`thread_settings`, for the commands that take
    --threads), then the host allocator; any failure is one line. `scripts/surface.py` runs
    through here too."""
    from ..system.mpi_env import launcher_rank

    def warn(text: str) -> None:
        if launcher_rank() == 0:  # every rank reads the same environment: one line is enough
            from ..system.text import printable

            print(f"{prog}: warning: {printable(text)}", file=sys.stderr)

    def body() -> int:
        computes = hasattr(args, "threads")  # the commands that compute take --threads
        with thread_settings(args.threads, warn) if computes else contextlib.nullcontext():
            from ..system.device import tune_host_allocator

            tune_host_allocator()  # process-wide, so here at the edge rather than in the library
            return int(args._run(args) or 0)

    # only commands whose ranks work together start MPI on a failure (landscape.cli.edge)
    together = getattr(args, "comm", "serial") != "serial"
    return run_command(prog, body, mpi=together)


def entry() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    entry()
