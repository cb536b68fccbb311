"""The Hessian's eigenvalue density (`landscape hessian --density`) as a figure: log density
against eigenvalue, as PyHessian and Ghorbani et al. (2019) draw it.

Example:
    >>> fig = Figure(); ax = fig.add_subplot()
    >>> drawn = plot_density(SpectralDensity.from_dict(surface.attrs["hessian"]["density"]), ax)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.spectrum import SpectralDensity
from ..errors import LandscapeError
from ..io.outputs import check_output
from .figure_files import save_figure
from .figure_style import FONT_PT, SINGLE_FIGSIZE

if TYPE_CHECKING:
    from ..core.loss_surface import Surface

__all__ = ["plot_density", "stored_density", "save_density_plot", "FLOOR"]

FLOOR = 1e-8  # the log axis starts here: far tails of the Gaussians are below any real mass


def plot_density(density: SpectralDensity, ax: Any) -> dict[str, Any]:
    """Draw the smoothed density (log scale) and the nodes' extent; return the artists by role.

    Returns {"density": Line2D, "support": [Line2D, Line2D]}.
    """
    y = np.maximum(density.density, FLOOR)
    (line,) = ax.semilogy(density.grid, y, color="tab:blue", lw=1.2)
    lo, hi = density.support
    support = [ax.axvline(v, color="0.5", ls=":", lw=0.8) for v in (lo, hi)]
    ax.set_ylim(FLOOR, max(float(y.max()) * 2, FLOOR * 10))
    ax.set_xlabel("eigenvalue", fontsize=FONT_PT)
    ax.set_ylabel("density (log scale)", fontsize=FONT_PT)
    ax.set_title(
        f"Hessian eigenvalue density: {density.probes} probes x {density.steps} Lanczos steps, "
        f"σ = {density.sigma:.2g}\nextreme nodes {lo:.4g} .. {hi:.4g}", fontsize=FONT_PT,
    )
    return {"density": line, "support": support}


def stored_density(surface: Surface) -> SpectralDensity | None:
    """The density a surface file stores with its Hessian (`--store`), or None."""
    hess = surface.attrs.get("hessian")
    if not isinstance(hess, dict) or "density" not in hess:
        return None
    if not isinstance(hess["density"], dict):
        raise LandscapeError(f"{surface.path}: the stored spectral density is damaged; recompute it "
                             "with `landscape hessian --density --store`")
    return SpectralDensity.from_dict(hess["density"])


def save_density_plot(surface: Surface, out_dir: str | Path, fmt: str = "png", dpi: int = 150) -> Path | None:
    """Write `<stem>_hessian_density.<fmt>` when the file stores a density; its path, else None."""
    from matplotlib.figure import Figure

    density = stored_density(surface)
    if density is None:
        return None
    path = Path(out_dir) / f"{Path(surface.path).stem}_hessian_density.{fmt}"
    check_output(path, fmt, "plot")
    fig = Figure(figsize=SINGLE_FIGSIZE, layout="constrained")
    plot_density(density, fig.add_subplot())
    save_figure(fig, path, fmt, dpi, "write plot")
    return path
