"""Tests of the data sets: digits split, local CIFAR files, synthetic data, and their errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.data.sources import (
    CIFAR10_NORM,
    CIFAR100_NORM,
    DIGITS_NORM,
    Dataset,
    dataset_from_meta,
    load_dataset,
    write_cifar_like,
)
from landscape.errors import LandscapeError

CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """The raw bundle, read straight from scikit-learn: images [1797, 8, 8] in 0..16, labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target


def _raw_digits(x: torch.Tensor) -> np.ndarray:
    """Undo the recorded normalization: back to integer pixels 0..16, one row per image."""
    mean, std = DIGITS_NORM.mean[0], DIGITS_NORM.std[0]
    raw = (x.double().numpy() * std + mean) * DIGITS_NORM.scale
    return np.rint(raw).reshape(len(x), -1)


def _sorted_rows(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])]


def _one_line_error(excinfo: pytest.ExceptionInfo[LandscapeError]) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


# ----------------------------------------------------------------------------- digits


def test_digits_is_a_stratified_80_20_partition_of_sklearn_digits(
    digits: Dataset, sklearn_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = sklearn_digits
    n_train, n_test = len(digits.x_train), len(digits.x_test)
    assert n_train + n_test == 1797 == len(labels)
    assert n_test == pytest.approx(0.2 * 1797, abs=1)
    assert digits.x_train.shape == (n_train, 1, 8, 8)
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    assert digits.num_classes == 10 and digits.in_channels == 1 and digits.image_size == 8

    # train + test hold exactly the 1797 bundled images with their labels: no loss, no duplicate
    ours = np.concatenate(
        [
            np.column_stack([_raw_digits(digits.x_train), digits.y_train.numpy()]),
            np.column_stack([_raw_digits(digits.x_test), digits.y_test.numpy()]),
        ]
    )
    theirs = np.column_stack([images.reshape(1797, -1), labels])
    np.testing.assert_array_equal(_sorted_rows(ours), _sorted_rows(theirs))

    # stratified: every class has (nearly) its overall share in both splits
    overall = np.bincount(labels, minlength=10) / len(labels)
    for y in (digits.y_train, digits.y_test):
        share = np.bincount(y.numpy(), minlength=10) / len(y)
        np.testing.assert_allclose(share, overall, atol=0.01)


def test_digits_normalization_is_recorded_and_standardizes_the_train_split(
    digits: Dataset, sklearn_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    meta = digits.meta()
    assert meta["normalization"] == {"mean": [0.3053], "std": [0.376], "scale": 16.0}
    assert digits.normalization == DIGITS_NORM
    # the constants are the statistics of the raw pixels in [0, 1]
    pixels = sklearn_digits[0] / 16.0
    assert pixels.mean() == pytest.approx(DIGITS_NORM.mean[0], abs=1e-3)
    assert pixels.std() == pytest.approx(DIGITS_NORM.std[0], abs=1e-3)
    assert digits.x_train.mean().item() == pytest.approx(0.0, abs=0.02)
    assert digits.x_train.std().item() == pytest.approx(1.0, abs=0.02)
    assert meta["name"] == "digits" and meta["split_seed"] == 0
    assert (meta["n_train"], meta["n_test"]) == (len(digits.x_train), len(digits.x_test))
    assert (meta["num_classes"], meta["in_channels"], meta["image_size"]) == (10, 1, 8)


def test_digits_split_is_fixed_by_the_seed(digits: Dataset) -> None:
    again = load_dataset("digits", split_seed=0)
    assert torch.equal(again.x_train, digits.x_train) and torch.equal(again.y_test, digits.y_test)

    other = load_dataset("digits", split_seed=1)
    assert other.split_seed == 1 and other.meta()["split_seed"] == 1
    assert len(other.x_train) == len(digits.x_train)  # same sizes, other images
    assert not torch.equal(other.x_train, digits.x_train)


def test_digits_rebuilt_from_its_metadata_is_the_same_split() -> None:
    ds = load_dataset("digits", split_seed=3)
    again = dataset_from_meta(ds.meta())
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_train, ds.y_train)
    assert torch.equal(again.x_test, ds.x_test)


def test_split_names(digits: Dataset) -> None:
    assert digits.splits == ("train", "test")
    x, y = digits.split("test")
    assert x is digits.x_test and y is digits.y_test
    with pytest.raises(LandscapeError, match="no 'val' split"):
        digits.split("val")


# ----------------------------------------------------------------------------- CIFAR


def _read_raw(base: Path, names: list[str], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Pixels [N, 3, 32, 32] and labels of the given pickle files, read independently."""
    xs, ys = [], []
    for name in names:
        with open(base / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        xs.append(np.asarray(batch[b"data"]).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[label_key]))
    return np.concatenate(xs), np.concatenate(ys)


def _normalized(raw: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    m = np.array(mean).reshape(1, 3, 1, 1)
    s = np.array(std).reshape(1, 3, 1, 1)
    return (raw / 255.0 - m) / s


@pytest.mark.parametrize("layout", ["parent", "batches-folder"])
def test_cifar10_from_local_pickles(tmp_path: Path, layout: str) -> None:
    base = write_cifar_like(tmp_path, "cifar10", n_per_file=6, seed=1)
    assert base == tmp_path / "cifar-10-batches-py"
    root = tmp_path if layout == "parent" else base
    ds = load_dataset("cifar10", root=root)

    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (6, 3, 32, 32)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.num_classes == 10 and ds.in_channels == 3 and ds.image_size == 32
    raw_train, labels_train = _read_raw(base, CIFAR10_FILES[:5], b"labels")
    raw_test, labels_test = _read_raw(base, ["test_batch"], b"labels")
    np.testing.assert_array_equal(ds.y_train.numpy(), labels_train)
    np.testing.assert_array_equal(ds.y_test.numpy(), labels_test)
    expected = _normalized(raw_train, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    np.testing.assert_allclose(ds.x_train.numpy(), expected, rtol=1e-5, atol=1e-5)
    expected = _normalized(raw_test, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    np.testing.assert_allclose(ds.x_test.numpy(), expected, rtol=1e-5, atol=1e-5)

    meta = ds.meta()
    assert ds.normalization == CIFAR10_NORM
    assert meta["normalization"]["scale"] == 255.0
    assert meta["normalization"]["mean"] == pytest.approx([0.4914, 0.4822, 0.4465])
    assert (meta["name"], meta["n_train"], meta["n_test"]) == ("cifar10", 30, 6)
    assert meta["root"] == str(root)


def test_cifar100_from_local_pickles(tmp_path: Path) -> None:
    base = write_cifar_like(tmp_path, "cifar100", n_per_file=7, seed=2)
    ds = load_dataset("cifar100", root=tmp_path)
    assert ds.x_train.shape == (7, 3, 32, 32) and ds.x_test.shape == (7, 3, 32, 32)
    assert ds.num_classes == 100
    raw, labels = _read_raw(base, ["train"], b"fine_labels")
    np.testing.assert_array_equal(ds.y_train.numpy(), labels)
    expected = _normalized(raw, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
    np.testing.assert_allclose(ds.x_train.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert ds.normalization == CIFAR100_NORM
    assert ds.meta()["normalization"]["std"] == pytest.approx([0.2673, 0.2564, 0.2762])


def test_cifar_rebuilt_from_its_metadata(tmp_path: Path) -> None:
    write_cifar_like(tmp_path, "cifar10", n_per_file=3)
    ds = load_dataset("cifar10", root=tmp_path)
    again = dataset_from_meta(ds.meta())
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)


def test_cifar_needs_a_data_root() -> None:
    with pytest.raises(LandscapeError) as excinfo:
        load_dataset("cifar10")
    message = _one_line_error(excinfo)
    assert "--data-root" in message and "data_batch_1" in message


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_root_that_is_not_a_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(LandscapeError) as excinfo:
        load_dataset(name, root=tmp_path / "nonexistent")
    message = _one_line_error(excinfo)
    assert "nonexistent" in message and "expected" in message


def test_cifar_missing_files_are_named(tmp_path: Path) -> None:
    base = write_cifar_like(tmp_path, "cifar10", n_per_file=2)
    (base / "data_batch_3").unlink()
    (base / "test_batch").unlink()
    with pytest.raises(LandscapeError) as excinfo:
        load_dataset("cifar10", root=tmp_path)
    message = _one_line_error(excinfo)
    assert "data_batch_3" in message and "test_batch" in message and "expected" in message
    assert "data_batch_2" not in message.split("expected")[0]  # only the missing ones


def test_cifar100_in_a_cifar10_folder_says_what_is_expected(tmp_path: Path) -> None:
    write_cifar_like(tmp_path, "cifar10", n_per_file=2)
    with pytest.raises(LandscapeError) as excinfo:
        load_dataset("cifar100", root=tmp_path)
    assert "cifar-100-python" in _one_line_error(excinfo)


def _bad_batch(kind: str) -> bytes:
    """Contents of a malformed `data_batch_2`."""
    good_labels = [0, 1]
    batches = {
        "wrong data shape": {b"data": np.zeros((2, 1024), np.uint8), b"labels": good_labels},
        "flat data": {b"data": np.zeros(2 * 3072, np.uint8), b"labels": good_labels},
        "data not pixels": {b"data": "abc", b"labels": good_labels},
        "label count": {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},
        "no labels": {b"data": np.zeros((2, 3072), np.uint8)},
        "not a dict": [1, 2, 3],
    }
    if kind == "text":
        return b"this is not a pickle\n"
    if kind == "empty":
        return b""
    return pickle.dumps(batches[kind])


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("text", "pickle"),
        ("empty", "pickle"),
        ("wrong data shape", "3072"),
        ("flat data", "3072"),
        ("data not pixels", "3072"),
        ("label count", "labels"),
        ("no labels", "labels"),
        ("not a dict", "dict"),
    ],
)
def test_malformed_cifar_file_gives_one_clear_line(
    tmp_path: Path, kind: str, expected: str
) -> None:
    base = write_cifar_like(tmp_path, "cifar10", n_per_file=2)
    (base / "data_batch_2").write_bytes(_bad_batch(kind))
    with pytest.raises(LandscapeError) as excinfo:
        load_dataset("cifar10", root=tmp_path)
    message = _one_line_error(excinfo)
    assert "data_batch_2" in message and expected in message


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_is_seeded() -> None:
    a = load_dataset("synthetic", split_seed=5, n_train=40, n_test=10, image_size=6)
    b = load_dataset("synthetic", split_seed=5, n_train=40, n_test=10, image_size=6)
    c = load_dataset("synthetic", split_seed=6, n_train=40, n_test=10, image_size=6)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert a.x_train.shape == (40, 3, 6, 6) and a.x_test.shape == (10, 3, 6, 6)
    assert a.y_train.min() >= 0 and a.y_train.max() < a.num_classes == 10


def test_synthetic_labels_come_from_a_linear_teacher() -> None:
    ds = load_dataset("synthetic", n_train=300, n_test=1, num_classes=3, in_channels=1)
    x = ds.x_train.flatten(1).double()
    # least squares on one-hot targets + argmax: a linear rule separates the labels far
    # better than chance (1/3)
    targets = torch.nn.functional.one_hot(ds.y_train, 3).double()
    w = torch.linalg.lstsq(x, targets).solution
    accuracy = ((x @ w).argmax(1) == ds.y_train).double().mean().item()
    assert accuracy > 0.8


def test_synthetic_rebuilt_from_its_metadata() -> None:
    ds = load_dataset("synthetic", split_seed=2, n_train=20, n_test=8)
    again = dataset_from_meta(ds.meta())
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.x_test, ds.x_test)


def test_unknown_dataset_suggests_a_close_name() -> None:
    with pytest.raises(LandscapeError) as excinfo:
        load_dataset("digts")
    message = _one_line_error(excinfo)
    assert "digts" in message and "digits" in message
