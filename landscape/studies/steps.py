"""The steps every study repeats: train or reuse a net, store the Hessian at a centre, print a table.

The skip-connection study (`landscape.studies.demo`) and the batch-size study
(`landscape.studies.batch_study`) differ in what they train and plot, not in how a cached
checkpoint is recognised, how a Hessian goes into a surface file or how a table is laid out.

Example:
    >>> columns = (("net", "net", "{}"), ("err", "test err %", "{:.2f}"))
    >>> print(format_table(columns, [{"net": "a", "err": 1.5}, {"net": "bb"}]))
    net  test err %
    ---  ----------
    a          1.50
    bb            -
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LandscapeError

if TYPE_CHECKING:  # the study modules load at `landscape demo --help`: no torch there
    from ..jobs.train import TrainConfig

__all__ = ["Column", "format_table", "train_or_reuse", "store_centre_hessian"]

Column = tuple[str, str, str]  # (row key, header, format)
Say = Callable[[str], None]


def format_table(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table: the first column left-aligned, the rest right; columns with no values
    in any row are left out, a missing value is `-`."""
    cols = [c for c in columns if any(c[0] in r for r in rows)]
    cells = [[c[1] for c in cols]] + [[c[2].format(r[c[0]]) if c[0] in r else "-" for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def train_or_reuse(
    tcfg: TrainConfig, say: Say, done: Callable[[Any, float], str] | None = None, dataset: Any = None,
    also_same: Callable[[Any], bool] | None = None,
) -> tuple[Path, float]:
    """Train `tcfg` (on `dataset` when given) into `tcfg.out`, or reuse the checkpoint there when it
    was trained with the same recipe, convergence criterion and data (and `also_same(checkpoint)`).
    Returns the path and the training seconds (0 if reused); `done(checkpoint, seconds)` gives the
    line said after training."""
    from ..io.checkpoint import load_checkpoint
    from ..jobs.train import same_recipe, train

    path = Path(tcfg.out)
    if path.exists():
        try:
            ckpt = load_checkpoint(path)
            same = ckpt.model == tcfg.model and same_recipe(ckpt.train, tcfg) and ckpt.data.get("name") == tcfg.data
            same = same and (also_same is None or also_same(ckpt))
        except LandscapeError:  # unreadable or another kind of file: train anew (train checks the output)
            same = False
        if same:
            say(f"reusing {path} (trained with the same recipe)")
            return path, 0.0
    start = time.perf_counter()
    ckpt = train(tcfg, dataset=dataset)
    seconds = time.perf_counter() - start
    if done is not None:
        say(done(ckpt, seconds))
    return path, seconds


def store_centre_hessian(hcfg: Any, surface: Path, n_samples: int, say: Say | None = None) -> float:
    """Compute the Hessian of `hcfg` (a `HessianConfig`) and store it into `surface`'s metrics,
    unless the file already holds one computed on `n_samples` samples. Returns the seconds taken."""
    from ..io.storage import read_surface
    from ..jobs.hessian_job import compute_hessian, store_hessian

    stored = read_surface(surface).attrs.get("hessian")
    if isinstance(stored, dict) and stored.get("n_samples") == n_samples:
        return 0.0
    start = time.perf_counter()
    result = compute_hessian(hcfg)
    store_hessian(surface, result)
    seconds = time.perf_counter() - start
    if say is not None:
        smallest = "" if result.min_eigenvalue is None else f", lambda_min {result.min_eigenvalue:.4g}"
        say(f"hessian: lambda_max {result.eigenvalues[0]:.4g}{smallest} "
            f"({result.iterations} Lanczos iterations, {seconds:.1f}s)")
    return seconds
