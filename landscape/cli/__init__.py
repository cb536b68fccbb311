"""The `landscape` command: parse, call one library function, print.

Heavy imports (torch, h5py, matplotlib) happen inside the subcommand handlers, so that
`landscape --help` and `--version` answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, TypeVar

from .._version import __version__
from ..errors import LandscapeError

__all__ = [
    "main",
    "build_parser",
    "Parser",
    "json_dict",
    "positive_int",
    "nonneg_int",
    "positive_float",
    "finite_float",
    "add_data_source",
    "add_threads",
    "thread_settings",
]

_N = TypeVar("_N", int, float)  # what a numeric argument type returns


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line (no usage dump) and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")



def json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"width\": 8}}', got {text!r}")
    return value


def _number_type(
    name: str, convert: Callable[[str], _N], accept: Callable[[_N], bool], expected: str
) -> Callable[[str], _N]:
    """An argparse type: `convert` the text, and reject it unless `accept(value)`, saying what was
    `expected` in one line."""

    def parse(text: str) -> _N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = parse.__qualname__ = name
    return parse


positive_int = _number_type("positive_int", int, lambda v: v >= 1, "a positive integer")
nonneg_int = _number_type("nonneg_int", int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number_type(
    "positive_float", float, lambda v: v > 0 and v != float("inf"), "a positive number"
)
finite_float = _number_type("finite_float", float, lambda v: abs(v) < float("inf"), "a finite number")


def add_data_source(group: argparse._ActionsContainer) -> None:
    """--data, --data-root, --data-test: the data set around a checkpoint (default: its own).

    Shared by `surface` and `hessian`; `landscape.data.dataset_for_checkpoint` resolves them.
    """
    group.add_argument("--data", default=None, help="data set (default: the checkpoint's own)")
    group.add_argument("--data-root", default=None, help="directory with CIFAR python-pickle files")
    group.add_argument("--data-test", default=None, help="test split for --data path.npz/.pt (arrays x, y)")


def add_threads(group: argparse._ActionsContainer) -> None:
    """--threads: torch's intra-op threads (default: the cores this process may use)."""
    group.add_argument("--threads", type=positive_int, default=None,
                       help="CPU threads per process (default: the cores this process may use: "
                       "affinity, container CPU quota, MPI ranks per node; OMP_NUM_THREADS wins)")


@contextlib.contextmanager
def thread_settings(threads: int | None) -> Iterator[int]:
    """The threads of one command that computes; the process-wide edge (`main`,
    `scripts/surface.py`) enters it before torch is imported.

    1. The environment: OMP_WAIT_POLICY=PASSIVE unless the user set it or GOMP_SPINCOUNT (GNU
       OpenMP reads it once, when torch loads it), and `threads` as OMP_NUM_THREADS (so it also
       holds for MPI ranks and child processes); see `landscape.threads.thread_environment`.
    2. torch's intra-op threads: `threads` (--threads), else OMP_NUM_THREADS when set, else the
       cores this process may use (`landscape.threads.default_threads`). Under MPI, `layout_of`
       later gives each rank its share of the node.

    Yields the thread count. Both are restored afterwards, as the command may run inside a
    longer-lived process (a test).
    """
    import os

    from ..threads import default_threads, machine_cpus, thread_environment

    added = thread_environment(os.environ, threads)
    saved = {k: os.environ.get(k) for k in added}
    os.environ.update(added)
    import torch

    before = torch.get_num_threads()
    try:
        wanted = threads or default_threads(machine_cpus(), env=os.environ)
        if wanted:
            torch.set_num_threads(wanted)
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---------------------------------------------------------------------------------------------

Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


# command modules, in the order `--help` lists them; each has COMMANDS = [(name, help, add, run)]
_MODULES = ("basic", "surface", "curves", "render", "hessian", "demo")


def _commands() -> list[Command]:
    """(name, help, add-arguments, run) for every subcommand."""
    import importlib

    out: list[Command] = []
    for name in _MODULES:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            continue  # a command group not present in this build
        out.extend(module.COMMANDS)
    return out


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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    computes = hasattr(args, "threads")  # the commands that compute take --threads
    # before torch is imported (tune_host_allocator imports it)
    with thread_settings(args.threads) if computes else contextlib.nullcontext():
        from ..device import tune_host_allocator

        tune_host_allocator()  # process-wide, so here at the edge rather than in the library
        with _terminate_as_interrupt():
            return _run_command(args)


def _run_command(args: argparse.Namespace) -> int:
    try:
        return int(args._run(args) or 0)
    except LandscapeError as e:
        if getattr(e, "echo", True):  # an MPI worker stopped by rank 0's error: printed there, once
            from ..text import printable

            print(f"landscape {args.command}: error: {printable(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # an OSError too: output piped into `head`
        return 0
    except OSError as e:  # a file operation the library did not turn into a LandscapeError
        from ..outputs import os_reason

        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"landscape {args.command}: error: {where}{os_reason(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"landscape {args.command}: interrupted", file=sys.stderr)
        return 130


def _interrupt(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a batch system's time limit, `kill`) ends a serial run like Ctrl-C, so that its
    `finally` blocks run: the surface file's lock is released and temporary files are removed.
    Under mpiexec SIGTERM is left as it is (an exception inside an MPI transfer could hang)."""
    from ..distributed import launched_under_mpi

    try:
        old = None if launched_under_mpi() > 1 else signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def entry() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    entry()
