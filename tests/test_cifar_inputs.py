"""CIFAR from elsewhere: the paper's normalization, stratified subsets, hostile pickles."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.data.dataset import stratified_indices
from landscape.data.sources import (
    CIFAR10_NORM,
    dataset_for_checkpoint,
    load_dataset,
    write_cifar_like,
)
from landscape.errors import LandscapeError

PAPER_MEAN = np.array([125.3, 123.0, 113.9]) / 255
PAPER_STD = np.array([63.0, 62.1, 66.7]) / 255


def _raw_train(root: Path) -> np.ndarray:
    """Train pixels of a CIFAR-10 folder read with the plain pickle module, [N, 3, 32, 32]."""
    xs = []
    for i in range(1, 6):
        with open(root / "cifar-10-batches-py" / f"data_batch_{i}", "rb") as f:
            xs.append(pickle.load(f, encoding="bytes")[b"data"])
    return np.concatenate(xs).reshape(-1, 3, 32, 32).astype(np.float64)


def _expected(raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (raw / 255 - mean.reshape(1, 3, 1, 1)) / std.reshape(1, 3, 1, 1)


@pytest.mark.parametrize(("spec", "mean", "std"), [
    ("paper", PAPER_MEAN, PAPER_STD),
    ("landscape", np.array(CIFAR10_NORM.mean), np.array(CIFAR10_NORM.std)),
    ("0.5,0.25", np.full(3, 0.5), np.full(3, 0.25)),
    ("0.1,0.2,0.3,0.4,0.5,0.6", np.array([0.1, 0.2, 0.3]), np.array([0.4, 0.5, 0.6])),
])
def test_normalization_is_selectable_and_recorded(tmp_path: Path, spec: str, mean: np.ndarray, std: np.ndarray) -> None:
    write_cifar_like(tmp_path, "cifar10", n_per_file=3)
    ds = load_dataset("cifar10", root=tmp_path, normalization=spec)
    np.testing.assert_allclose(ds.x_train.double().numpy(), _expected(_raw_train(tmp_path), mean, std),
                               rtol=0, atol=2e-6)
    recorded = ds.meta()["normalization"]
    np.testing.assert_allclose(recorded["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(recorded["std"], std, rtol=1e-12)
    assert recorded.get("preset", "landscape") == {"paper": "paper", "landscape": "landscape"}.get(spec, "custom")


def test_a_checkpoint_without_data_uses_the_papers_constants(tmp_path: Path) -> None:
    write_cifar_like(tmp_path, "cifar10", n_per_file=3)
    paper = dataset_for_checkpoint("model_300.t7", {}, "cifar10", tmp_path)
    assert paper.normalization is not None and paper.normalization.name == "paper"
    np.testing.assert_allclose(paper.x_train.double().numpy(),
                               _expected(_raw_train(tmp_path), PAPER_MEAN, PAPER_STD), atol=2e-6)
    ours = dataset_for_checkpoint("model_300.t7", {}, "cifar10", tmp_path, normalization="landscape")
    assert not torch.allclose(ours.x_train, paper.x_train, rtol=1e-4, atol=0)
    # a landscape checkpoint trained with the paper's constants is evaluated with them again
    again = dataset_for_checkpoint("c.pt", paper.meta(), None, tmp_path)
    assert torch.equal(again.x_train, paper.x_train)


@pytest.mark.parametrize("spec", ["paper", "1,2,3", "0.5,0", "a,b", "nan,1"])
def test_bad_normalization_is_one_line(tmp_path: Path, spec: str) -> None:
    name = "cifar100" if spec == "paper" else "cifar10"
    write_cifar_like(tmp_path, name, n_per_file=2)
    with pytest.raises(LandscapeError) as excinfo:
        load_dataset(name, root=tmp_path, normalization=spec)
    assert "\n" not in str(excinfo.value) and "--normalization" in str(excinfo.value)


def test_stratified_subset_keeps_each_class_share_exactly() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 15 + [3] * 5)
    labels = labels[torch.randperm(100, generator=torch.Generator().manual_seed(1))]
    keep = stratified_indices(labels, 21, seed=3)
    counts = np.bincount(labels[keep].numpy(), minlength=4)
    # 21 * (50, 30, 15, 5) / 100 = 10.5, 6.3, 3.15, 1.05: floors 10, 6, 3, 1 (20), the largest
    # remainder (class 0) gets the 21st
    assert counts.tolist() == [11, 6, 3, 1]
    assert keep.tolist() == sorted(set(keep.tolist())) and len(keep) == 21
    assert torch.equal(keep, stratified_indices(labels, 21, seed=3))  # seeded
    assert not torch.equal(keep, stratified_indices(labels, 21, seed=4))
    assert keep.tolist() != list(range(21))  # not the first N


def test_max_samples_subset_is_stratified_and_rebuilt_from_the_metadata(tmp_path: Path) -> None:
    from landscape.data.sources import dataset_from_meta

    write_cifar_like(tmp_path, "cifar10", n_per_file=40)
    full = load_dataset("cifar10", root=tmp_path)
    part = load_dataset("cifar10", root=tmp_path, max_samples=50, split_seed=2)
    keep = stratified_indices(full.y_train, 50, seed=2)
    assert torch.equal(part.x_train, full.x_train[keep]) and torch.equal(part.y_train, full.y_train[keep])
    assert len(part.y_test) == 40  # fewer than 50: the whole test split
    meta = part.meta()
    assert meta["max_samples"] == 50 and meta["n_train"] == 50
    assert torch.equal(dataset_from_meta(meta, root=tmp_path).x_train, part.x_train)


# peak memory of this process since its exec (VmHWM; ru_maxrss carries the parent's over exec)
_HWM = (
    "def _hwm_kb():\n"
    "    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])\n"
)


def _doubling_pickle(levels: int) -> bytes:
    """A protocol-2 pickle of {'data': L, 'labels': L} where L nests `levels` lists, each holding
    the one below twice through the memo: a few bytes per level, 2**levels leaves."""
    out = bytearray(b"\x80\x02}q\x00(X\x04\x00\x00\x00dataq\x01]q\x02K\x00a")  # [0] at memo 2
    for level in range(levels):
        out += b"0](h" + bytes([level + 2]) + b"h" + bytes([level + 2]) + b"eq" + bytes([level + 3])
    out += b"X\x06\x00\x00\x00labelsh" + bytes([levels + 2]) + b"u."
    return bytes(out)


@pytest.mark.parametrize("entry", ["data", "labels"])
def test_a_memo_doubling_pickle_is_refused_fast_and_small(tmp_path: Path, entry: str) -> None:
    base = write_cifar_like(tmp_path, "cifar10", n_per_file=2)
    bomb = _doubling_pickle(40)
    assert len(bomb) < 500
    leaf = pickle.loads(_doubling_pickle(3))["data"]
    assert leaf[0] is leaf[1] and len(str(leaf)) > 8  # the layout really doubles
    if entry == "labels":  # real pixels, the bomb only as labels
        bomb = bomb.replace(b"X\x04\x00\x00\x00data", b"X\x04\x00\x00\x00junk")
        good = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": pickle.loads(bomb)["labels"]})
        bomb = good
    (base / "data_batch_1").write_bytes(bomb)
    code = (
        _HWM + "import time\n"
        "from landscape.data.sources import load_dataset\n"
        "from landscape.errors import LandscapeError\n"
        "t = time.perf_counter()\n"
        f"try:\n    load_dataset('cifar10', root={str(tmp_path)!r})\n"
        "except LandscapeError as e:\n    print('REFUSED', e)\n"
        "print(time.perf_counter() - t, _hwm_kb())\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = run.stdout.strip().splitlines()
    assert lines[0].startswith("REFUSED") and "data_batch_1" in lines[0], run.stdout + run.stderr
    seconds, max_rss_kb = (float(v) for v in lines[-1].split())
    assert seconds < 2.0
    assert max_rss_kb < 1_000_000  # the interpreter with torch is ~300 MB; 2**40 leaves would be TBs


@pytest.mark.parametrize(("labels", "expected"), [
    (["a", "b"], "integer class labels"),
    ([0.5, 1.0], "integer class labels"),
    ([[0], [1]], "integer class labels"),
    ([0, 10], "0..9"),
    ([-1, 0], "0..9"),
])
def test_bad_cifar_labels_are_one_line(tmp_path: Path, labels: list, expected: str) -> None:
    base = write_cifar_like(tmp_path, "cifar10", n_per_file=2)
    (base / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels}))
    with pytest.raises(LandscapeError) as excinfo:
        load_dataset("cifar10", root=tmp_path)
    assert "\n" not in str(excinfo.value) and "data_batch_3" in str(excinfo.value) and expected in str(excinfo.value)


@pytest.mark.parametrize("keys", [{1: 0, 2.5: 1}, {b"\xff\xfe": 0, (1, 2): 1}])
def test_bad_cifar_key_types_are_one_line(tmp_path: Path, keys: dict) -> None:
    base = write_cifar_like(tmp_path, "cifar10", n_per_file=2)
    (base / "test_batch").write_bytes(pickle.dumps(keys))
    with pytest.raises(LandscapeError) as excinfo:
        load_dataset("cifar10", root=tmp_path)
    assert "\n" not in str(excinfo.value) and "lacks 'data'" in str(excinfo.value)
