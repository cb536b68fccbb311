"""Datasets as tensors loaded once: built-in digits, local CIFAR-10/100, synthetic, user arrays.

Every dataset is normalized once, at load time, with constants that are part of its
definition and are recorded in checkpoints and surface files, so that evaluation uses exactly
the preprocessing that training used. Nothing is downloaded, and nothing is transformed per pass.

Example:
    >>> ds = load_dataset("digits")
    >>> ds.x_train.shape, ds.num_classes
    (torch.Size([1437, 1, 8, 8]), 10)
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import LandscapeError
from ..system.text import printable
from .dataset import Dataset, Normalization

__all__ = [
    "Dataset",
    "Normalization",
    "BUILTIN_DATASETS",
    "load_dataset",
    "dataset_from_meta",
    "dataset_for_checkpoint",
    "normalization_for",
    "PAPER_CIFAR10_NORM",
    "write_cifar_like",
]

BUILTIN_DATASETS = ("digits", "cifar10", "cifar100", "synthetic")


DIGITS_NORM = Normalization(mean=(0.3053,), std=(0.3760,), scale=16.0)
CIFAR10_NORM = Normalization(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), scale=255.0)
CIFAR100_NORM = Normalization(mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), scale=255.0)
# the constants of the paper's code (cifar10/dataloader.py there): what its checkpoints expect
PAPER_CIFAR10_NORM = Normalization(
    mean=(125.3 / 255, 123.0 / 255, 113.9 / 255), std=(63.0 / 255, 62.1 / 255, 66.7 / 255),
    scale=255.0, name="paper",
)
_BUILTIN_NORMS = {"digits": DIGITS_NORM, "cifar10": CIFAR10_NORM, "cifar100": CIFAR100_NORM}
_CIFAR_MAX_BYTES = 256 << 20  # a CIFAR batch file is 31 MB; a larger one is not CIFAR


def normalization_for(name: str, spec: str | Normalization | None) -> Normalization:
    """The normalization of built-in image set `name`: `None` or `landscape` (ours), `paper`
    (CIFAR-10 only: the paper's code's constants), `MEAN,STD` (every channel) or one mean and
    one std per channel, `M1,M2,M3,S1,S2,S3`, in units of the pixel range (0..1).

    Example:
        >>> normalization_for("cifar10", "paper").mean[0] == 125.3 / 255
        True
    """
    own = _BUILTIN_NORMS[name]
    if isinstance(spec, Normalization):
        return spec
    if spec is None or spec == "landscape":
        return own
    if spec == "paper":
        if name != "cifar10":
            raise LandscapeError(
                f"--normalization paper: the paper's code has constants for cifar10 only, not {name}; "
                "use landscape or MEAN,STD"
            )
        return PAPER_CIFAR10_NORM
    try:
        values = [float(v) for v in str(spec).split(",")]
    except ValueError:
        values = []
    channels = len(own.mean)
    if len(values) == 2:
        values = [values[0]] * channels + [values[1]] * channels
    if len(values) != 2 * channels or not all(np.isfinite(values)) or min(values[channels:]) <= 0:
        raise LandscapeError(
            f"--normalization {str(spec)[:60]!r}: use paper, landscape, MEAN,STD or {channels} means "
            f"then {channels} stds (finite numbers, stds > 0, in units of the pixel range 0..1)"
        )
    return Normalization(tuple(values[:channels]), tuple(values[channels:]), own.scale, name="custom")


def _recorded_normalization(name: str, meta: object, source: str) -> Normalization | None:
    """The normalization a file records for a built-in set, checked (files are data)."""
    if name not in _BUILTIN_NORMS or not isinstance(meta, dict):
        return None
    mean, std = meta.get("mean"), meta.get("std")
    own = _BUILTIN_NORMS[name]
    ok = all(
        isinstance(v, (list, tuple)) and len(v) == len(own.mean)
        and all(isinstance(e, (int, float)) and not isinstance(e, bool) and np.isfinite(e) for e in v)
        for v in (mean, std)
    )
    if not ok or min(std) <= 0:  # type: ignore[arg-type]
        raise LandscapeError(
            f"{source} records a damaged normalization for {name}; pass --normalization "
            "landscape|paper|MEAN,STD"
        )
    values = (tuple(float(v) for v in mean), tuple(float(v) for v in std))  # type: ignore[union-attr]
    preset = meta.get("preset", "landscape" if values == (own.mean, own.std) else "custom")
    return Normalization(*values, own.scale, name=preset if preset in ("landscape", "paper") else "custom")


def load_dataset(
    name: str = "digits",
    root: str | Path | None = None,
    split_seed: int = 0,
    normalization: str | Normalization | None = None,
    max_samples: int | None = None,
    **kwargs: Any,
) -> Dataset:
    """Load a dataset by name (`digits`, `cifar10`, `cifar100`, `synthetic`).

    `root` is the local directory holding CIFAR in the python-pickle layout. `normalization`
    chooses the built-in image sets' constants (`normalization_for`). `max_samples` keeps a
    seeded (`split_seed`), class-stratified subset of at most that many samples per split
    (`Dataset.subset`). Extra keyword arguments go to the synthetic generator (`n_train`,
    `n_test`, `in_channels`, `image_size`, `num_classes`).
    """
    ds = _load_named(name, root, split_seed, normalization, **kwargs)
    return ds.subset(max_samples, split_seed) if max_samples is not None else ds


def _load_named(
    name: str, root: str | Path | None, split_seed: int, normalization: str | Normalization | None,
    **kwargs: Any,
) -> Dataset:
    if normalization is not None and name not in _BUILTIN_NORMS:
        raise LandscapeError(
            f"--normalization applies to the built-in image sets ({', '.join(_BUILTIN_NORMS)}), not "
            f"{name}: normalize your own data before passing it"
        )
    if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)) or not 0 <= split_seed < 2**32:
        raise LandscapeError(
            f"split seed {split_seed!r} (--split-seed, or the one a checkpoint records): use an "
            "integer from 0 to 4294967295"
        )
    if name == "digits":
        return _load_digits(split_seed, normalization_for(name, normalization))
    if name in ("cifar10", "cifar100"):
        if root is None:
            raise LandscapeError(
                f"dataset '{name}' needs --data-root: a directory holding the python-pickle "
                f"files ({_cifar_expected(name)})"
            )
        return _load_cifar(name, Path(root), normalization_for(name, normalization))
    if name == "synthetic":
        return _make_synthetic(split_seed, **kwargs)
    if name.endswith((".npz", ".pt", ".pth")) or ":" in name:
        from .userdata import load_user_data

        return load_user_data(name, **kwargs)
    import difflib

    close = difflib.get_close_matches(name, BUILTIN_DATASETS, n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise LandscapeError(
        f"unknown dataset '{name}'{hint} Built-in: {', '.join(BUILTIN_DATASETS)}; or give a "
        "path.npz / path.pt with arrays x, y, or an import path package.module:factory"
    )


def dataset_from_meta(
    meta: dict[str, Any], root: str | Path | None = None, source: str = "the file",
    normalization: str | None = None,
) -> Dataset:
    """Rebuild the dataset a checkpoint was trained on, from its recorded metadata.

    Files are data: a recorded import path (a data factory) is refused in one line naming
    `source`; the user passes it with --data (Python: `data=`) to run it.
    """
    from ..system.hooks import is_import_path, refuse_stored_import_path

    name = meta.get("name", "digits")
    if not isinstance(name, str):
        raise LandscapeError(f"{source} records a data set name of type {type(name).__name__}; pass --data")
    if is_import_path(name):
        raise refuse_stored_import_path(source, "data set", name, "--data")
    kwargs: dict[str, Any] = {}
    if name == "synthetic":
        kwargs = {
            k: meta[k]
            for k in ("n_train", "n_test", "in_channels", "image_size", "num_classes")
            if k in meta
        }
    norm = normalization_for(name, normalization) if normalization is not None and name in _BUILTIN_NORMS else (
        _recorded_normalization(name, meta.get("normalization"), source)
    )
    split_seed = meta.get("split_seed", 0)
    ds = load_dataset(name, root=root or meta.get("root"), split_seed=split_seed, normalization=norm, **kwargs)
    max_samples, seed = meta.get("max_samples"), meta.get("subset_seed", split_seed)
    if max_samples is None:
        return ds
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (max_samples, seed)) or not max_samples:
        raise LandscapeError(
            f"{source} records a subset max_samples={max_samples!r}, subset_seed={seed!r}; expected "
            "a positive integer and a seed >= 0"
        )
    return ds.subset(max_samples, seed)


def dataset_for_checkpoint(
    ckpt: str | Path,
    recorded: dict[str, Any],
    data: str | None = None,
    root: str | Path | None = None,
    test: str | None = None,
    normalization: str | None = None,
) -> Dataset:
    """The data set of `--data` (with `--data-root`, `--data-test`), else the one checkpoint
    `ckpt` records (`recorded`, its data metadata); one line when there is neither.

    `normalization` (`--normalization`) overrides the constants; by default they are the ones
    the checkpoint records, and for a file that records none (the paper's code's) on
    cifar10, the paper's constants."""
    if test is not None and not _is_user_data(data):
        source = "the checkpoint's own data set" if data is None else f"--data {data}"
        raise LandscapeError(
            f"--data-test {test} has no effect with {source}: it gives the test split of "
            "--data path.npz/.pt or --data package.module:factory; drop it"
        )
    if data is None:
        if not recorded:
            raise LandscapeError(f"checkpoint {ckpt} records no data set; pass --data (e.g. --data digits)")
        return dataset_from_meta(recorded, root=root, source=f"checkpoint {ckpt}", normalization=normalization)
    if test is not None:
        return load_dataset(data, root=root, test=test, normalization=normalization)
    if normalization is None and data in _BUILTIN_NORMS:
        if recorded.get("name") == data:
            normalization = _recorded_normalization(data, recorded.get("normalization"), f"checkpoint {ckpt}")
        elif not recorded and data == "cifar10":
            normalization = "paper"
    return load_dataset(data, root=root, normalization=normalization)


def _is_user_data(name: str | None) -> bool:
    """An array file or an import path (the data sets `--data-test` applies to)."""
    return name is not None and (name.endswith((".npz", ".pt", ".pth")) or ":" in name)


def _load_digits(split_seed: int, norm: Normalization = DIGITS_NORM) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images), stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.reshape(-1, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=0.2, random_state=split_seed, stratify=labels
    )
    idx_train.sort()
    idx_test.sort()
    return Dataset(
        name="digits",
        x_train=norm.apply(images[idx_train]),
        y_train=torch.from_numpy(labels[idx_train]),
        x_test=norm.apply(images[idx_test]),
        y_test=torch.from_numpy(labels[idx_test]),
        num_classes=10,
        normalization=norm,
        split_seed=split_seed,
        augment="shift",
    )


def _cifar_expected(name: str) -> str:
    if name == "cifar10":
        return "cifar-10-batches-py/data_batch_1..5 and test_batch"
    return "cifar-100-python/train and test"


class _CifarUnpickler(pickle.Unpickler):
    """Loads only what CIFAR's python files hold (dicts, lists, bytes, numbers, numpy arrays):
    a pickle naming any other callable is refused, so a planted file cannot run code."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not CIFAR data)")
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise LandscapeError(f"missing CIFAR file {path}") from None
    if size > _CIFAR_MAX_BYTES:
        raise LandscapeError(
            f"CIFAR file {path} is {size / 1e6:.0f} MB; a CIFAR batch is about 31 MB: not the "
            "python-pickle layout"
        )
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise LandscapeError(f"missing CIFAR file {path}") from None
    except Exception as e:  # corrupt or foreign file
        raise LandscapeError(
            f"cannot read CIFAR file {path} ({type(e).__name__}: {e}); expected a python pickle "
            "of a dict with 'data' and labels"
        ) from None
    if not isinstance(obj, dict):
        raise LandscapeError(f"CIFAR file {path} does not hold a dict (not the python-pickle layout)")
    return {k.decode("utf-8", "replace") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_arrays(path: Path, label_key: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of one file, each checked for the layout before any conversion:
    nested lists (which a few hundred bytes of pickle can make exponentially large through
    shared references) never reach numpy."""
    batch = _read_pickle(path)
    if "data" not in batch or label_key not in batch:
        keys = sorted(printable(repr(k))[:30] for k in batch)[:6]
        raise LandscapeError(f"CIFAR file {path} lacks 'data' or '{label_key}' (keys: {', '.join(keys)})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = f"an array of {data.dtype}" if isinstance(data, np.ndarray) else f"a {type(data).__name__}"
        raise LandscapeError(
            f"CIFAR file {path}: 'data' is {kind}, expected a numpy uint8 array of pixels [N, 3072]"
        )
    if data.ndim != 2 or data.shape[1] != 3072:
        raise LandscapeError(f"CIFAR file {path}: 'data' has shape {data.shape}, expected [N, 3072]")
    labels = _cifar_labels(path, batch[label_key], label_key, classes)
    if len(labels) != len(data):
        raise LandscapeError(f"CIFAR file {path}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_labels(path: Path, raw: object, key: str, classes: int) -> np.ndarray:
    """A flat list (or integer array) of class indices in 0..classes-1, else one line."""
    if isinstance(raw, np.ndarray) and raw.ndim == 1 and raw.dtype.kind in "iu":
        labels = raw.astype(np.int64)
    elif isinstance(raw, list) and all(type(v) is int for v in raw):
        labels = np.array(raw, dtype=np.int64)
    else:
        raise LandscapeError(
            f"CIFAR file {path}: '{key}' is not a flat list of integer class labels; the file is "
            "damaged or not CIFAR"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise LandscapeError(
            f"CIFAR file {path}: '{key}' holds {labels.min()}..{labels.max()}, expected class "
            f"labels 0..{classes - 1}"
        )
    return labels


def _load_cifar(name: str, root: Path, norm: Normalization) -> Dataset:
    """CIFAR-10/100 from the standard python-pickle files under `root`."""
    sub = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    base = root / sub if (root / sub).is_dir() else root
    if not base.is_dir():
        raise LandscapeError(
            f"--data-root {root} is not a directory; expected {_cifar_expected(name)} inside it"
        )
    if name == "cifar10":
        train_files = [base / f"data_batch_{i}" for i in range(1, 6)]
        test_files, label_key, classes = [base / "test_batch"], "labels", 10
    else:
        train_files, test_files = [base / "train"], [base / "test"]
        label_key, classes = "fine_labels", 100
    missing = [p.name for p in train_files + test_files if not p.is_file()]
    if missing:
        raise LandscapeError(
            f"{base} is missing {', '.join(missing)}; expected {_cifar_expected(name)} "
            "(the python version of the data set, unpacked)"
        )
    xs, ys = zip(*(_cifar_arrays(p, label_key, classes) for p in train_files))
    x_test, y_test = _cifar_arrays(test_files[0], label_key, classes)
    return Dataset(
        name=name,
        x_train=norm.apply(np.concatenate(xs)),
        y_train=torch.from_numpy(np.concatenate(ys)),
        x_test=norm.apply(x_test),
        y_test=torch.from_numpy(y_test),
        num_classes=classes,
        normalization=norm,
        root=str(root),
        augment="crop-flip",
    )


def write_cifar_like(root: Path, name: str = "cifar10", n_per_file: int = 20, seed: int = 0) -> Path:
    """Write tiny random files in the CIFAR python-pickle layout (for tests and demos)."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        base = root / "cifar-10-batches-py"
        files, key, classes = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "labels", 10
    else:
        base = root / "cifar-100-python"
        files, key, classes = ["train", "test"], "fine_labels", 100
    base.mkdir(parents=True, exist_ok=True)
    for fname in files:
        batch = {
            b"data": rng.integers(0, 256, size=(n_per_file, 3072), dtype=np.uint8),
            key.encode(): rng.integers(0, classes, size=n_per_file).tolist(),
        }
        with open(base / fname, "wb") as f:
            pickle.dump(batch, f)
    return base


def _make_synthetic(
    split_seed: int = 0,
    n_train: int = 256,
    n_test: int = 128,
    in_channels: int = 3,
    image_size: int = 8,
    num_classes: int = 10,
) -> Dataset:
    """Seeded Gaussian images labelled by a fixed random linear teacher (learnable, tiny)."""
    g = torch.Generator().manual_seed(split_seed)
    n = n_train + n_test
    x = torch.randn(n, in_channels, image_size, image_size, generator=g)
    teacher = torch.randn(in_channels * image_size * image_size, num_classes, generator=g)
    y = (x.flatten(1) @ teacher).argmax(1)
    return Dataset(
        name="synthetic",
        x_train=x[:n_train].contiguous(),
        y_train=y[:n_train].contiguous(),
        x_test=x[n_train:].contiguous(),
        y_test=y[n_train:].contiguous(),
        num_classes=num_classes,
        normalization=None,
        split_seed=split_seed,
        extra={"n_train": n_train, "n_test": n_test},
    )
