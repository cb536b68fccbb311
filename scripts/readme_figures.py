#!/usr/bin/env python
"""Regenerate every figure of the README from the demo's surface files: one command.

Run it where `landscape demo` ran (it reads surfaces/demo/*.h5, the batch study's
surfaces/demo/batch/*.h5 and checkpoints, and writes plots/readme/):

    python scripts/readme_figures.py
    python scripts/readme_figures.py --surfaces surfaces/demo --out plots/readme

The figures are drawn at `README_DPI` (66), the resolution at which the README shows them at
their natural size: a single view 3.9 in = 257 px wide (three side by side in a table) and the
comparison of the demo's seven nets 12.1 in = 800 px wide, so every text is at least 9 px
(`landscape.render.figure_style`; `tests/test_figures.py` checks these sizes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from landscape.cli.edge import lenient_streams, run_command
from landscape.cli.options import Parser, positive_int
from landscape.errors import LandscapeError
from landscape.io.storage import read_surface
from landscape.render.comparison import save_comparison
from landscape.render.figure_files import save_plots
from landscape.render.figure_style import README_DPI
from landscape.studies.batch_study import BatchStudyConfig, render_batch
from landscape.studies.demo import DEFAULT_NETS

# (net, view) of each single figure in the README's table, left to right
SINGLE_VIEWS = (("resnet20_noshort", "contour"), ("resnet56", "surface"), ("resnet56_noshort", "surface"))
COMPARE_NAME = "demo_compare.png"


def readme_figures(surface_dir: Path, out_dir: Path, dpi: int = README_DPI,
                   ckpt_dir: Path = Path("ckpts/demo/batch")) -> list[Path]:
    """Write the README's figures from `surface_dir` into `out_dir`; return their paths."""
    missing = [n for n in DEFAULT_NETS if not (surface_dir / f"{n}.h5").is_file()]
    if missing:
        raise LandscapeError(
            f"{surface_dir} lacks {', '.join(f'{n}.h5' for n in missing)}; run `landscape demo` "
            "first (or pass --surfaces where it wrote its surfaces)"
        )
    written: list[Path] = []
    for net, kind in SINGLE_VIEWS:
        written += save_plots(read_surface(surface_dir / f"{net}.h5"), out_dir, ["train_loss"], kind, "png", dpi,
                              on_skip=print)
    surfaces = [read_surface(surface_dir / f"{n}.h5") for n in DEFAULT_NETS]
    path = save_comparison(surfaces, out_dir / COMPARE_NAME, "train_loss", dpi, on_skip=print)
    written += [path] if path is not None else []
    batch = BatchStudyConfig(surface_dir=str(surface_dir / "batch"), plot_dir=str(out_dir), ckpt_dir=str(ckpt_dir))
    if (surface_dir / "batch").is_dir():  # the batch study's two figures (`landscape demo --study batch`)
        written += render_batch(batch)
    return written


def main(argv: list[str] | None = None) -> int:
    with lenient_streams():
        p = Parser(prog="readme_figures.py", description=__doc__.split("\n\n")[0])
        p.add_argument("--surfaces", default="surfaces/demo", help="the demo's surface folder (default surfaces/demo)")
        p.add_argument("--ckpts", default="ckpts/demo/batch", help="the batch study's checkpoints (weight norms)")
        p.add_argument("--out", default="plots/readme", help="output folder (default plots/readme)")
        p.add_argument("--dpi", type=positive_int, default=README_DPI,
                       help=f"resolution (default {README_DPI}, the README's)")
        args = p.parse_args(argv)
        return run_command("readme_figures.py", lambda: _figures(args))


def _figures(args: argparse.Namespace) -> int:
    for path in readme_figures(Path(args.surfaces), Path(args.out), args.dpi, Path(args.ckpts)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
