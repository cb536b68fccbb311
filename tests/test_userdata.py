"""The user's own data (`--data path.npz|path.pt|package.module:factory`) and import hooks."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.data.sources import Dataset, load_dataset
from landscape.data.userdata import load_user_data
from landscape.errors import LandscapeError
from landscape.system.hooks import call_factory, import_object, is_torchscript

FACTORIES = """
    import numpy as np
    import torch

    from landscape.data.sources import Dataset


    def pair():
        g = torch.Generator().manual_seed(0)
        return torch.randn(12, 3, generator=g), torch.arange(12) % 4


    def arrays():
        rng = np.random.default_rng(0)
        return {"x": rng.normal(size=(10, 2)), "y": rng.normal(size=(10,)),
                "x_test": rng.normal(size=(4, 2)), "y_test": rng.normal(size=(4,))}


    class Squares(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return torch.tensor([float(i), 1.0]), torch.tensor(float(i * i))


    def torch_dataset():
        return Squares()


    def ours():
        x = torch.zeros(3, 1, 2, 2)
        return Dataset("mine", x, torch.tensor([0, 1, 0]), None, None, num_classes=2)


    def scaled(scale=1.0):
        return torch.ones(4, 2) * scale, torch.zeros(4)


    def broken():
        raise RuntimeError("database offline")


    def junk():
        return "not data"


    def loader():
        return torch.utils.data.DataLoader(Squares(), batch_size=2)


    class Dicts(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"tokens": torch.zeros(3)}, 0


    def dicts():
        return Dicts()
"""


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = "landscape_test_data_factories"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


# ---------------------------------------------------------------------------------------------
# array files


def test_npz_train_and_test_files_with_dtypes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 3)), rng.integers(0, 5, size=20)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "test.npz", x=x[:6] + 1, y=y[:6])
    ds = load_dataset(str(tmp_path / "train.npz"), test=str(tmp_path / "test.npz"))
    assert isinstance(ds, Dataset)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    np.testing.assert_allclose(ds.x_train.numpy(), x.astype(np.float32))
    np.testing.assert_array_equal(ds.y_test.numpy(), y[:6])
    np.testing.assert_allclose(ds.x_test.numpy(), (x[:6] + 1).astype(np.float32))
    assert ds.splits == ("train", "test")
    assert ds.num_classes == int(y.max()) + 1


def test_npz_with_its_own_test_split_and_regression_targets(tmp_path: Path) -> None:
    tokens = np.arange(24, dtype=np.int32).reshape(8, 3)
    np.savez(tmp_path / "d.npz", x=tokens, y=np.linspace(0, 1, 8), x_test=tokens[:2], y_test=[0.5, 0.25])
    ds = load_user_data(str(tmp_path / "d.npz"))
    assert ds.x_train.dtype == torch.int64  # token ids stay integers
    assert ds.y_train.dtype == torch.float32 and ds.num_classes == 0
    assert ds.y_test.tolist() == [0.5, 0.25]


def test_pt_file_as_dict_or_pair(tmp_path: Path) -> None:
    x, y = torch.randn(5, 2, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1])
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    torch.save((x, y), tmp_path / "p.pth")
    for name in ("d.pt", "p.pth"):
        ds = load_dataset(str(tmp_path / name))
        torch.testing.assert_close(ds.x_train, x.float())
        assert ds.y_train.tolist() == y.tolist()


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        ({"inputs": np.zeros((3, 2)), "labels": np.zeros(3)}, "has no arrays 'x' and 'y' (it has: inputs, labels)"),
        ({"x": np.zeros((3, 2))}, "(it has: x)"),
        ({"x": np.zeros((3, 2)), "y": np.zeros(4)}, "x has 3 samples but y has 4"),
    ],
)
def test_bad_npz_is_one_line_naming_the_file(tmp_path: Path, arrays: dict, expected: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(LandscapeError) as info:
        load_dataset(str(path))
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(LandscapeError, match="missing.npz does not exist"):
        load_user_data(str(tmp_path / "missing.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(LandscapeError, match="cannot read data file .*junk.npz"):
        load_user_data(str(tmp_path / "junk.npz"))
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(LandscapeError, match="holds a list; expected a dict with tensors x, y"):
        load_user_data(str(tmp_path / "list.pt"))
    np.savez(tmp_path / "a.npz", x=np.zeros((4, 3)), y=np.zeros(4))
    np.savez(tmp_path / "b.npz", x=np.zeros((4, 5)), y=np.zeros(4))
    with pytest.raises(LandscapeError, match=r"shape \(5,\) per sample, the train inputs .* have \(3,\)"):
        load_user_data(str(tmp_path / "a.npz"), test=str(tmp_path / "b.npz"))
    with pytest.raises(LandscapeError, match="must be an array file"):
        load_user_data(str(tmp_path / "a.npz"), test="digits")


# ---------------------------------------------------------------------------------------------
# data factories


def test_factory_results_become_datasets(factories: str) -> None:
    ds = load_dataset(f"{factories}:pair")
    assert ds.x_train.shape == (12, 3) and ds.num_classes == 4 and ds.name == f"{factories}:pair"
    ds = load_dataset(f"{factories}:arrays")
    assert ds.splits == ("train", "test") and ds.x_test.shape == (4, 2) and ds.x_train.dtype == torch.float32
    ds = load_dataset(f"{factories}:torch_dataset")
    assert ds.x_train.tolist() == [[float(i), 1.0] for i in range(5)]
    assert ds.y_train.tolist() == [float(i * i) for i in range(5)]
    ds = load_dataset(f"{factories}:ours")
    assert ds.name == "mine" and ds.x_train.shape == (3, 1, 2, 2)
    ds = load_user_data(f"{factories}:scaled", scale=3.0)
    assert ds.x_train.max().item() == 3.0


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("broken", "data factory '{m}:broken' failed: RuntimeError: database offline"),
        ("junk", "data factory '{m}:junk' returned a str; expected (X, y)"),
        ("missing", "cannot find data factory '{m}:missing'"),
        ("loader", "returned a DataLoader; on the command line return (X, y)"),
        ("dicts", "inputs are dict, not tensors"),
    ],
)
def test_factory_errors_name_the_factory(factories: str, target: str, expected: str) -> None:
    with pytest.raises(LandscapeError) as info:
        load_dataset(f"{factories}:{target}")
    assert expected.format(m=factories) in str(info.value)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# hooks


def test_import_object_and_its_errors() -> None:
    assert import_object("torch.nn.functional:cross_entropy", "loss") is torch.nn.functional.cross_entropy
    assert import_object("torch.nn:Linear.forward", "x") is torch.nn.Linear.forward
    with pytest.raises(LandscapeError, match="loss import path 'torch' must look like 'package.module:factory'"):
        import_object("torch", "loss")
    with pytest.raises(LandscapeError, match="cannot import loss 'no_such_pkg_xyz:f': ModuleNotFoundError"):
        import_object("no_such_pkg_xyz:f", "loss")
    with pytest.raises(LandscapeError, match="'torch.nn' has no attribute 'Nope'"):
        import_object("torch.nn:Nope", "model factory")
    with pytest.raises(LandscapeError, match="thing 'x' is a int, not callable"):
        call_factory(3, "thing 'x'")


def test_current_directory_is_importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `landscape surface --model mynets:build` from a project directory, without installing it
    (tmp_path / "landscape_cwd_module.py").write_text("VALUE = 41 + 1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert import_object("landscape_cwd_module:VALUE", "value") == 42
    finally:
        sys.modules.pop("landscape_cwd_module", None)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_files_are_recognized(tmp_path: Path) -> None:
    net = torch.nn.Linear(2, 2)
    torch.jit.script(net).save(str(tmp_path / "m.ts"))
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    assert is_torchscript(tmp_path / "m.ts")
    assert not is_torchscript(tmp_path / "sd.pt")
    assert not is_torchscript(tmp_path / "none.pt")


def test_npz_of_named_inputs_is_a_dict_of_tensors(tmp_path: Path) -> None:
    """A file without `x`: every array but the targets is an input keyword (model(**inputs));
    `target` names the targets; `_test` arrays are the test split."""
    ids, mask = np.arange(12).reshape(4, 3), np.ones((4, 3), dtype=np.int32)
    np.savez(tmp_path / "tok.npz", input_ids=ids, attention_mask=mask, labels=ids * 2,
             input_ids_test=ids[:2], attention_mask_test=mask[:2], labels_test=ids[:2])
    ds = load_user_data(str(tmp_path / "tok.npz"), target="labels")
    assert sorted(ds.x_train) == ["attention_mask", "input_ids"]
    assert ds.x_train["attention_mask"].dtype == torch.int64
    assert torch.equal(ds.y_train, torch.from_numpy(ids * 2))
    assert torch.equal(ds.x_test["input_ids"], torch.from_numpy(ids[:2]))
    assert ds.meta()["inputs"] == ["attention_mask", "input_ids"] and ds.meta()["n_test"] == 2
    with pytest.raises(LandscapeError, match="has no targets array 'y' |has no arrays 'x' and 'y'"):
        load_user_data(str(tmp_path / "tok.npz"))
    np.savez(tmp_path / "uneven.npz", a=np.zeros((4, 2)), b=np.zeros((3, 2)), y=np.zeros(4, dtype=np.int64))
    with pytest.raises(LandscapeError, match="differ in samples"):
        load_user_data(str(tmp_path / "uneven.npz"))
