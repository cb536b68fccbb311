"""`landscape plot`, `compare`, `report` and `export`: figures, reports and VTK files from surfaces."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import finite_float, positive_float, positive_int, watch_interval

PLOT_HELP = """draw a surface file (1D or 2D, auto-detected) into plots/

Writes plots/<file stem>_<surf>_<kind>.png for each array and view, and prints the paths; a file
holding the Hessian's eigenvalue density (`landscape hessian --density --store`) also gets
plots/<file stem>_hessian_density.png (log density against eigenvalue; unless --surf is given).

examples:
  landscape plot surfaces/resnet20.h5                                  (every view, every array)
  landscape plot surfaces/resnet20.h5 --surf train_loss --kind contour
  landscape plot surfaces/resnet20.h5 --kind surface --zscale linear --zmax 10
  landscape plot surfaces/resnet20_pca.h5 --kind contour --trajectory
  landscape plot surfaces/resnet20.h5 --surf eig_ratio                 (|min/max| curvature map)
  landscape plot surfaces/resnet20.h5 --kind contour --minima          (local minima, basin depths)
  landscape plot surfaces/mlp_trajectory_frames.h5 --gif               (a PNG per frame, and a GIF)

A file of frames through training (`landscape surface --ckpt snaps/*.pt --frames`) also gets
plots/<file stem>_<surf>_frame_NNN.png, every frame on one colour scale (train_loss unless --surf).
"""

COMPARE_HELP = """one figure comparing surfaces on a shared scale (contours on top, 3D below)

Refuses surfaces on different grids, or with different direction kinds or normalizations,
unless --allow-mismatch.

example:
  landscape compare surfaces/resnet56.h5 surfaces/resnet56_noshort.h5 --out plots/compare.png
"""

REPORT_HELP = """one self-contained interactive HTML report (opens offline)

Per surface: 3D surface, contour, slices, train against test, curvature, metadata and metrics;
for several files also a side-by-side view with shared colour scale and linked 3D cameras.

With --watch, on files still being computed: rewrites the report each time a new level of the
grid completes (the whole range at a finer resolution); the page reloads itself until every
surface is complete, then the report is written a last time without the reload.

examples:
  landscape report surfaces/resnet56.h5 surfaces/resnet56_noshort.h5 -o plots/report.html
  landscape report surfaces/resnet56.h5 --watch        (while `landscape surface` computes it)
"""

EXPORT_HELP = """export a 2D surface for ParaView (VTK PolyData .vtp)

example:
  landscape export surfaces/resnet20.h5 --vtp --zmax 10 --log
"""

KINDS = ("auto", "line", "contour", "contourf", "heatmap", "surface", "all")  # = views.KINDS
SURF_HELP = "train_loss, train_acc, test_loss, test_acc, or eig_ratio/max_eig/min_eig with curvature maps"


def _add_scale(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log", action="store_true", help="log scale (log-spaced contour levels, log10 z in 3D)")
    p.add_argument("--zmax", type=finite_float, default=None, help="clip values above ZMAX (e.g. 10)")
    p.add_argument("--zscale", choices=("linear", "log"), default=None,
                   help="z of the 3D view (default: log for a loss, as in the paper; linear for accuracy)")


def _add_levels(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vmin", type=finite_float, default=None, help="lowest contour level (paper default 0.1)")
    p.add_argument("--vmax", type=finite_float, default=None, help="contour levels below VMAX (paper default 10)")
    p.add_argument("--vlevel", type=positive_float, default=None,
                   help="contour level step (paper default 0.5; at most 1000 levels are drawn)")


def _add_plot(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="surface file (landscape's or the paper code's)")
    p.add_argument("--surf", action="append", default=None, metavar="NAME",
                   help=f"array to draw (repeatable; default: all that exist): {SURF_HELP}")
    p.add_argument("--kind", choices=KINDS, default="auto",
                   help="auto: a curve for 1D files; contour, contourf, heatmap and 3D surface for 2D")
    _add_levels(p)
    _add_scale(p)
    p.add_argument("--trajectory", action="store_true", help="overlay the projected training path (PCA files)")
    p.add_argument("--minima", action="store_true",
                   help="mark the local minima of each loss on the 2D views (star: the deepest; "
                   "the others labelled with their depth below the saddle where they merge)")
    p.add_argument("--gif", action="store_true",
                   help="frames files (surface --frames): also an animated GIF of the frames (needs Pillow)")
    p.add_argument("--mp4", action="store_true",
                   help="frames files: also an MP4 of the frames (needs ffmpeg on the PATH)")
    p.add_argument("--format", choices=("png", "pdf", "svg"), default="png", help="file format (default png)")
    p.add_argument("--dpi", type=positive_int, default=150,
                   help="resolution of PNGs (default 150; at most 50 million pixels per figure)")
    p.add_argument("--out", default="plots", help="output directory (default plots/)")


def _note(text: str) -> None:
    """A view skipped (nothing finite to draw): one line, and the command goes on."""
    from ..system.text import printable

    print(f"note: {printable(text)}")


def _run_plot(args: argparse.Namespace) -> int:
    from ..core.preview import preview, preview_note
    from ..io.storage import read_surface
    from ..render.figure_files import save_plots

    surface = preview(read_surface(args.file))  # a file still being computed: its finest complete level
    if (args.gif or args.mp4) and not surface.n_frames:
        from ..errors import LandscapeError

        raise LandscapeError(f"--gif/--mp4 animate frames; {args.file} holds none (make one with "
                             "`landscape surface --ckpt SNAPSHOTS... --frames`)")
    if args.gif or args.mp4:  # a missing writer is named before anything is drawn
        from ..render.frames_plot import require_writers

        require_writers(gif=args.gif, mp4=args.mp4)
    if preview_note(surface):
        _note(f"{preview_note(surface)} (the file is still being computed; plot it again later)")
    paths = save_plots(
        surface, args.out, args.surf, args.kind, args.format, args.dpi,
        vmin=args.vmin, vmax=args.vmax, vlevel=args.vlevel, log=args.log, zmax=args.zmax,
        trajectory=args.trajectory, on_skip=_note, zscale=args.zscale, minima=args.minima,
    )
    if not args.surf:  # every view: the Hessian's density too, when the file stores one
        from ..render.density_plot import save_density_plot

        density_path = save_density_plot(surface, args.out, args.format, args.dpi)
        paths += [density_path] if density_path is not None else []
        from ..render.curve_plot import save_curve_plot

        curve_path = save_curve_plot(surface, args.out, args.format, args.dpi)  # a curve's surface
        paths += [curve_path] if curve_path is not None else []
    if surface.n_frames:
        from ..render.frames_plot import save_frames

        for surf in args.surf or ["train_loss" if "train_loss" in surface.arrays else surface.surfaces()[0]]:
            paths += save_frames(surface, args.out, surf, args.dpi, gif=args.gif, mp4=args.mp4,
                                 vmin=args.vmin, vmax=args.vmax, vlevel=args.vlevel, log=args.log, zmax=args.zmax)
    for path in paths:
        print(path)
    return 0


def _add_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", help="surface files to compare")
    p.add_argument("--surf", default="train_loss", help=f"array to compare (default train_loss): {SURF_HELP}")
    _add_levels(p)
    _add_scale(p)
    p.add_argument("--allow-mismatch", action="store_true",
                   help="draw surfaces with different grids or direction kinds/norms anyway")
    p.add_argument("--dpi", type=positive_int, default=120,
                   help="resolution (default 120; at most 50 million pixels per figure)")
    p.add_argument("--out", default=None,
                   help="figure file, .png/.pdf/.svg (default plots/<stem>_vs_<stem>_<surf>.png)")


def _run_compare(args: argparse.Namespace) -> int:
    from ..io.storage import read_surface
    from ..render.comparison import save_comparison

    surfaces = [read_surface(f) for f in args.files]
    out = args.out or str(Path("plots") / ("_vs_".join(Path(f).stem for f in args.files) + f"_{args.surf}.png"))
    path = save_comparison(
        surfaces, out, args.surf, args.dpi, on_skip=_note, allow_mismatch=args.allow_mismatch,
        log=args.log, zmax=args.zmax, vmin=args.vmin, vmax=args.vmax, vlevel=args.vlevel, zscale=args.zscale,
    )
    if path is not None:
        print(path)
    return 0


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", help="surface files")
    p.add_argument("--surf", default=None, help="array for the 3D and contour views (default train_loss)")
    p.add_argument("--zmax", type=finite_float, default=None, help="clip values above ZMAX in the main views")
    p.add_argument("-o", "--out", default=None,
                   help="HTML file (default plots/<stem>_report.html, or plots/report.html for several)")
    p.add_argument("--watch", action="store_true",
                   help="rewrite the report as levels of files being computed complete, until they are done")
    p.add_argument("--interval", type=watch_interval, default=None,
                   help="with --watch: seconds between looks at the files (default 5, at most 3600)")


def _run_report(args: argparse.Namespace) -> int:
    from ..io.storage import read_surface
    from ..render.report import write_report

    default = f"{Path(args.files[0]).stem}_report.html" if len(args.files) == 1 else "report.html"
    out = args.out or Path("plots") / default
    if args.interval is not None and not args.watch:
        from ..errors import LandscapeError

        raise LandscapeError("--interval is for --watch: add --watch, or leave --interval out")
    if args.watch:
        from ..render.watch import WatchSettings, watch_report

        interval = 5.0 if args.interval is None else args.interval
        settings = WatchSettings(interval=interval, reload_seconds=max(1, round(interval)))
        watch_report(args.files, out, args.surf, args.zmax, settings, on_write=print, on_skip=_note)
        return 0
    surfaces = [read_surface(f) for f in args.files]
    path = write_report(surfaces, out, args.surf, args.zmax, on_skip=_note)
    print(path)
    return 0


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="2D surface file")
    p.add_argument("--vtp", action="store_true", help="VTK PolyData (.vtp, ASCII) for ParaView (the format)")
    p.add_argument("--surf", default="train_loss", help=f"array for the height (default train_loss): {SURF_HELP}")
    p.add_argument("--zmax", type=finite_float, default=None, help="clip heights above ZMAX")
    p.add_argument("--log", action="store_true", help="height ln(z + 0.1), as the paper's converter")
    p.add_argument("--out", default="plots", help="output directory (default plots/)")


def _run_export(args: argparse.Namespace) -> int:
    from ..errors import LandscapeError
    from ..io.storage import read_surface
    from ..render.export import default_vtp_path, export_vtp

    if not args.vtp:
        raise LandscapeError("choose an export format: --vtp (VTK PolyData for ParaView)")
    surface = read_surface(args.file)
    path = export_vtp(surface, default_vtp_path(surface, args.surf, args.out, args.log), args.surf, args.zmax, args.log)
    print(path)
    return 0


COMMANDS = [
    ("plot", PLOT_HELP, _add_plot, _run_plot),
    ("compare", COMPARE_HELP, _add_compare, _run_compare),
    ("report", REPORT_HELP, _add_report, _run_report),
    ("export", EXPORT_HELP, _add_export, _run_export),
]
