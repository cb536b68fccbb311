"""The notebook API and the CLI hooks on the user's own model, data and loss.

Every surface value is checked against an independent plain-PyTorch evaluation: the model's
weights set to centre + a * x + b * y with `load_state_dict`, then one eval-mode pass over all
the data in a single batch.
"""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import RunCli
from torch import nn
from torch.utils.data import DataLoader

import landscape
from landscape.errors import LandscapeError

RTOL = 1e-5

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")




# ---------------------------------------------------------------------------------------------
# user code that is not in the zoo


class TinyTransformer(nn.Module):
    """Token embedding, one pre-norm masked self-attention block with an MLP, masked mean pool."""

    def __init__(self, vocab: int = 16, dim: int = 8, classes: int = 3, dropout: float = 0.3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(0.1 * torch.randn(6, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.pos[: tokens.shape[1]]  # [B, T, D]
        q, k, v = self.qkv(self.norm1(h)).chunk(3, dim=-1)
        att = (q @ k.transpose(1, 2)) / math.sqrt(q.shape[-1])  # [B, T, T]
        att = att.masked_fill(mask[:, None, :] == 0, float("-inf")).softmax(-1)
        h = h + self.proj(att @ v)
        h = h + self.mlp(self.norm2(h))
        m = mask.unsqueeze(-1).float()
        return self.head((h * m).sum(1) / m.sum(1))


class TokenData(torch.utils.data.Dataset):
    """Items ({"tokens": [T] int64, "mask": [T] float}, label); 100 samples (last batch short)."""

    def __init__(self, n: int = 100, length: int = 6, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.tokens = torch.randint(0, 16, (n, length), generator=g)
        self.mask = (torch.rand(n, length, generator=g) > 0.3).float()
        self.mask[:, 0] = 1.0
        self.labels = (self.tokens[:, 0] % 3).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return {"tokens": self.tokens[i], "mask": self.mask[i]}, self.labels[i]


def regression_data(n: int = 64, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = torch.stack([x[:, 0] * x[:, 1], x[:, 2].sin()], 1) + 0.1 * torch.randn(n, 2, generator=g)
    return x, y


def regressor(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 2))


def per_sample_huber(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.huber_loss(outputs, targets, reduction="none").mean(1)


# ---------------------------------------------------------------------------------------------
# the independent reference


def point_state(center: Mapping[str, torch.Tensor], d: Any, a: float, b: float) -> dict[str, torch.Tensor]:
    state = {k: v.clone() for k, v in center.items()}
    for k in d.x:
        state[k] = center[k] + a * d.x[k] + (b * d.y[k] if d.y is not None else 0.0)
    return state


def plain_eval(
    model: nn.Module, state: Mapping[str, torch.Tensor], call: Callable[[nn.Module], torch.Tensor],
    targets: torch.Tensor, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[float, float]:
    """(mean loss, accuracy %) of the model at `state`, one batch, eval mode, float64 mean."""
    net = copy.deepcopy(model)
    net.load_state_dict(state)
    net.eval()
    with torch.no_grad():
        out = call(net)
        value = loss(out, targets).double().mean().item()
    acc = float("nan")
    if not targets.is_floating_point():
        acc = 100.0 * (out.argmax(-1) == targets).double().mean().item()
    return value, acc


def grid_points(s: Any) -> list[tuple[tuple[int, ...], float, float]]:
    if s.y is None:
        return [((i,), float(a), 0.0) for i, a in enumerate(s.x)]
    return [((i, j), float(a), float(b)) for i, a in enumerate(s.x) for j, b in enumerate(s.y)]


def assert_matches_plain(
    s: Any, model: nn.Module, split: str, call: Callable[[nn.Module], torch.Tensor],
    targets: torch.Tensor, loss: Callable[..., torch.Tensor], acc: bool = True,
) -> None:
    center = model.state_dict()
    for idx, a, b in grid_points(s):
        want_loss, want_acc = plain_eval(model, point_state(center, s.directions, a, b), call, targets, loss)
        assert s.arrays[f"{split}_loss"][idx] == pytest.approx(want_loss, rel=RTOL), (idx, a, b)
        if acc:
            assert s.arrays[f"{split}_acc"][idx] == pytest.approx(want_acc, abs=1e-9), (idx, a, b)


def ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out - y).pow(2).mean(1)


# ---------------------------------------------------------------------------------------------
# the README example


def readme_example() -> str:
    """The README's notebook/API python block, exactly as written there."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines()
    in_section = False
    for i, line in enumerate(lines):
        if line.startswith("#"):
            in_section = bool(re.search(r"notebook|\bAPI\b", line, re.IGNORECASE))
        elif in_section and line.strip().startswith("```python"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
            return "\n".join(lines[i + 1 : end]) + "\n"
    raise AssertionError("README.md has no python block under a 'Notebook API' heading")


def test_readme_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    code = readme_example()
    assert len(code.strip().splitlines()) <= 15
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    try:
        exec(compile(code, "README.md", "exec"), namespace)
    finally:
        plt.close("all")
    results = [v for v in namespace.values() if isinstance(v, landscape.Surface)]
    assert results, "the example makes no Surface"
    for s in results:
        assert s.computed.all() and np.isfinite(s.arrays["train_loss"]).all()
    for path in tmp_path.glob("*.h5"):
        stored = landscape.read_surface(path)
        np.testing.assert_array_equal(stored.arrays["train_loss"], results[0].arrays["train_loss"])
    for path in tmp_path.glob("*.html"):
        assert "plotly" in path.read_text(encoding="utf-8").lower()


# ---------------------------------------------------------------------------------------------
# a user's model with dict inputs, through a DataLoader


def test_transformer_with_dict_inputs_through_a_dataloader_equals_plain_pytorch() -> None:
    torch.manual_seed(0)
    model = TinyTransformer().train()  # left in train mode: the surface must use eval mode
    before = copy.deepcopy(model.state_dict())
    data = TokenData()
    loader = DataLoader(data, batch_size=32)
    s = landscape.surface(model, loader, x="-1:1:5", y=(-0.5, 0.5, 3), seed=3)

    assert s.shape == (5, 3) and sorted(s.arrays) == ["point_seconds", "train_acc", "train_loss"]
    assert s.attrs["model"] == "TinyTransformer" and s.attrs["n_train"] == 100
    assert s.attrs["plan"]["plan_strategy"] == "sequential"
    assert_matches_plain(s, model, "train", lambda net: net(data.tokens, data.mask), data.labels, ce)
    # the user's model is left as it was: same weights, still in train mode
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    # filter-normalized directions (Li et al.): each row of a weight's direction has that row's
    # norm; 1-D tensors (biases, LayerNorm) are not moved
    w, d = model.state_dict()["qkv.weight"], s.directions.x["qkv.weight"]
    torch.testing.assert_close(d.norm(dim=1), w.norm(dim=1), rtol=1e-5, atol=1e-6)
    assert not s.directions.y["norm1.weight"].any()


def test_dict_inputs_in_memory_and_named_splits() -> None:
    torch.manual_seed(1)
    model = TinyTransformer()
    train, test = TokenData(60, seed=1), TokenData(30, seed=2)
    data = {
        "train": ({"tokens": train.tokens, "mask": train.mask}, train.labels),
        "val": DataLoader(test, batch_size=7),
    }
    s = landscape.surface(model, data, x="-1:1:3", y="-1:1:3", batch_size=16)
    assert set(s.arrays) >= {"train_loss", "train_acc", "val_loss", "val_acc"}
    assert_matches_plain(s, model, "train", lambda net: net(train.tokens, train.mask), train.labels, ce)
    assert_matches_plain(s, model, "val", lambda net: net(test.tokens, test.mask), test.labels, ce)


# ---------------------------------------------------------------------------------------------
# regression losses


def test_mse_regression_and_custom_losses_equal_plain_pytorch(tmp_path: Path) -> None:
    model = regressor()
    x, y = regression_data()
    s = landscape.surface(model, (x, y), x="-1:1:7", loss="mse")
    assert s.ndim == 1 and "train_acc" not in s.arrays  # no accuracy for a regression loss
    assert_matches_plain(s, model, "train", lambda net: net(x), y, mse, acc=False)
    # a per-sample callable, and a module returning a scalar mean (weighted back by batch size)
    h = landscape.surface(model, (x.numpy(), y.numpy()), x="-1:1:7", loss=per_sample_huber, batch_size=10)
    assert h.attrs["loss"].endswith(":per_sample_huber")
    assert_matches_plain(h, model, "train", lambda net: net(x), y, per_sample_huber, acc=False)
    m = landscape.surface(model, (x, y), x="-1:1:7", loss=nn.L1Loss(), batch_size=64)
    l1 = lambda out, t: (out - t).abs().mean(1)  # noqa: E731
    assert_matches_plain(m, model, "train", lambda net: net(x), y, l1, acc=False)


def test_separate_steps_and_file_round_trip(tmp_path: Path) -> None:
    model = regressor(2)
    x, y = regression_data()
    d = landscape.make_directions(model, seed=5)
    s = landscape.surface(model, (x, y), x="-1:1:5", y="-1:1:5", directions=d, loss="mse")
    points = landscape.evaluate_points(model, d, (x, y), [[-0.5, 1.0], [0.0, 0.0]], loss="mse")
    assert set(points) == {"train_loss"}
    np.testing.assert_allclose(points["train_loss"], [s.arrays["train_loss"][1, 4], s.arrays["train_loss"][2, 2]], rtol=RTOL)
    path = landscape.write_surface(tmp_path / "s.h5", s)
    r = landscape.read_surface(path)
    np.testing.assert_array_equal(r.arrays["train_loss"], s.arrays["train_loss"])
    assert r.attrs["model_class"] == "Sequential" and r.attrs["loss"] == "mse"
    for key in d.x:
        torch.testing.assert_close(r.directions.x[key], d.x[key])
    # the stored directions are reused by name
    again = landscape.surface(model, (x, y), x="-1:1:5", y="-1:1:5", directions=path, loss="mse")
    np.testing.assert_allclose(again.arrays["train_loss"], s.arrays["train_loss"], rtol=1e-12)
    # interpolation towards another model: at a=1 the loss is the other model's loss
    other = regressor(3)
    line = landscape.make_directions(model, "interpolate", target=other, two_d=False)
    at_one = landscape.evaluate_points(model, line, (x, y), [1.0], loss="mse")["train_loss"][0]
    with torch.no_grad():
        assert at_one == pytest.approx(mse(other.eval()(x), y).mean().item(), rel=RTOL)


def test_out_path_resumes_and_checks_the_model(tmp_path: Path) -> None:
    model = regressor()
    x, y = regression_data()
    out = tmp_path / "r.h5"
    first = landscape.surface(model, (x, y), x="-1:1:5", y="-1:1:3", loss="mse", out=out)
    assert first.path == str(out) and first.computed.all()
    with h5py.File(out, "r+") as f:  # as if killed: the last 6 points never computed
        computed = f["computed"][()]
        computed.ravel()[-6:] = 0
        f["computed"][...] = computed
        loss = f["train_loss"][()]
        loss.ravel()[-6:] = np.nan
        f["train_loss"][...] = loss
    second = landscape.surface(model, (x, y), x="-1:1:5", y="-1:1:3", loss="mse", out=out)
    np.testing.assert_array_equal(second.arrays["train_loss"], first.arrays["train_loss"])
    assert [r["points"] for r in second.attrs["runs"]] == [15, 6]
    with pytest.raises(LandscapeError, match="other settings.*weights_sha256"):
        landscape.surface(regressor(1), (x, y), x="-1:1:5", y="-1:1:3", loss="mse", out=out)


def test_torchscript_model_and_bare_state_dict(tmp_path: Path) -> None:
    model = regressor().eval()
    x, y = regression_data()
    torch.jit.script(model).save(str(tmp_path / "m.ts"))
    ref = landscape.surface(model, (x, y), x="-1:1:5", y="-1:1:5", loss="mse")
    ts = landscape.surface(str(tmp_path / "m.ts"), (x, y), x="-1:1:5", y="-1:1:5", loss="mse",
                           trust_torchscript=True)
    assert ts.attrs["model_source"] == "torchscript"
    np.testing.assert_allclose(ts.arrays["train_loss"], ref.arrays["train_loss"], rtol=RTOL)
    # a fresh model plus a bare state dict gives the same surface; the fresh model is untouched
    torch.save(model.state_dict(), tmp_path / "w.pt")
    fresh = regressor(7)
    sd = landscape.surface(fresh, (x, y), x="-1:1:5", y="-1:1:5", loss="mse", ckpt=tmp_path / "w.pt")
    np.testing.assert_allclose(sd.arrays["train_loss"], ref.arrays["train_loss"], rtol=1e-12)
    assert not torch.equal(fresh[0].weight, model[0].weight)


def test_bn_recompute_with_dataloader_equals_plain_pytorch() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 2))
    x, y = regression_data(48)
    with torch.no_grad():  # non-trivial running statistics
        model.train()(x * 2 + 1)
    loader = DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=20)
    data = {"train": loader}
    s = landscape.surface(model, data, x="-1:1:3", y="-1:1:3", loss="mse", bn="recompute")
    center = model.state_dict()
    for idx, a, b in grid_points(s):
        net = copy.deepcopy(model)
        net.load_state_dict(point_state(center, s.directions, a, b))
        bn = net[1]
        bn.reset_running_stats()
        bn.momentum = None
        net.train()
        with torch.no_grad():
            for xb, _ in loader:
                net(xb)
            want = mse(net.eval()(x), y).double().mean().item()
        assert s.arrays["train_loss"][idx] == pytest.approx(want, rel=RTOL)
    plain = landscape.surface(model, data, x="-1:1:3", y="-1:1:3", loss="mse", bn="eval")
    assert not np.allclose(plain.arrays["train_loss"], s.arrays["train_loss"])


# ---------------------------------------------------------------------------------------------
# bad input: one line naming the user's object and what was expected


def one_line_error(fn: Callable[[], Any]) -> str:
    with pytest.raises(LandscapeError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_input_messages() -> None:
    x, y = regression_data(8)
    model = regressor()
    msg = one_line_error(lambda: landscape.surface(model, (torch.randn(8, 7), y), x="-1:1:3", loss="mse"))
    assert "data split 'train' does not fit model Sequential: inputs [2, 7] float32" in msg
    assert "mat1 and mat2" in msg
    tokens = DataLoader(TokenData(8), batch_size=4)
    msg = one_line_error(lambda: landscape.surface(model, tokens, x="-1:1:3"))
    assert "inputs {'tokens': [4, 6] int64, 'mask': [4, 6] float32}" in msg
    assert "model(**inputs)" in msg

    def bad_loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (out - t) ** 2

    msg = one_line_error(lambda: landscape.surface(model, (x, y), x="-1:1:3", loss=bad_loss))
    assert "loss bad_loss returned shape (8, 2); expected a scalar mean, one value per sample ([8]) or (sum, count)" in msg
    assert "is a int; expected (X, y)" in one_line_error(lambda: landscape.surface(model, 42))
    assert "or an import path package.module:factory" in one_line_error(lambda: landscape.surface("no_net", (x, y)))
    assert "unknown loss 'hinge'" in one_line_error(lambda: landscape.surface(model, (x, y), loss="hinge"))
    assert "--x='-1:1'" in one_line_error(lambda: landscape.surface(model, (x, y), x="-1:1", loss="mse"))
    one_d = landscape.make_directions(model, two_d=False)
    assert "directions are 1D" in one_line_error(
        lambda: landscape.surface(model, (x, y), x="-1:1:3", y="-1:1:3", directions=one_d, loss="mse")
    )


# ---------------------------------------------------------------------------------------------
# the command line with the user's own model, weights and data


USER_PACKAGE = """
    import os

    import torch
    from torch import nn


    def factory():
        with open("factory_calls.txt", "a") as f:  # which MPI rank called it
            f.write(os.environ.get("PMI_RANK", "-") + "\\n")
        torch.manual_seed(123)  # deliberately different weights from the checkpoint's
        return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 2))


    class DictNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.gate, self.out = nn.Embedding(16, 6), nn.Linear(6, 6), nn.Linear(6, 3)

        def forward(self, tokens, mask):
            h = torch.tanh(self.gate(self.embed(tokens))) * mask.unsqueeze(-1)
            return self.out(h.sum(1) / mask.sum(1, keepdim=True))


    def dict_factory():
        torch.manual_seed(5)
        return DictNet()


    class Tokens(torch.utils.data.Dataset):
        def __init__(self):
            g = torch.Generator().manual_seed(6)
            self.tokens = torch.randint(0, 16, (50, 5), generator=g)
            self.mask = (torch.rand(50, 5, generator=g) > 0.3).float()
            self.mask[:, 0] = 1.0
            self.labels = self.tokens[:, 1] % 3

        def __len__(self):
            return 50

        def __getitem__(self, i):
            return {"tokens": self.tokens[i], "mask": self.mask[i]}, self.labels[i]


    def token_loader():
        return torch.utils.data.DataLoader(Tokens(), batch_size=16)


    def broken():
        raise ValueError("no such width: 7")


    def data():
        g = torch.Generator().manual_seed(4)
        return torch.randn(40, 5, generator=g), torch.randn(40, 2, generator=g)


    def broken_data():
        raise OSError("bucket not mounted")


    def mse_loss(outputs, targets):
        return (outputs - targets).pow(2).mean(1)  # one value per sample
"""


@pytest.fixture
def user_project(tmp_path: Path) -> Path:
    """A project directory with a package `tests_pkg`, a bare state dict and .npz files."""
    pkg = tmp_path / "tests_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(textwrap.dedent(USER_PACKAGE))
    model = regressor()
    torch.save(model.state_dict(), tmp_path / "bare_state.pt")
    torch.jit.script(model.eval()).save(str(tmp_path / "model.ts"))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "file.npz", x=rng.normal(size=(60, 5)), y=rng.normal(size=(60, 2)))
    np.savez(tmp_path / "test.npz", x=rng.normal(size=(30, 5)), y=rng.normal(size=(30, 2)))
    np.savez(tmp_path / "bad.npz", inputs=rng.normal(size=(3, 5)), labels=rng.normal(size=(3, 2)))
    return tmp_path


def test_cli_user_factory_bare_state_dict_and_npz_equal_plain_pytorch(run_cli: RunCli, user_project: Path) -> None:
    grid = ("--x=-1:1:5", "--y=-1:1:3")
    code, _, err = run_cli(
        "surface", "--model", "tests_pkg.mod:factory", "--ckpt", "bare_state.pt", "--data", "file.npz",
        "--data-test", "test.npz", "--loss", "mse", *grid, "--out", "s.h5", "--quiet", cwd=user_project,
    )
    assert code == 0, err
    s = landscape.read_surface(user_project / "s.h5")
    assert sorted(k for k in s.arrays if k.endswith(("_loss", "_acc"))) == ["test_loss", "train_loss"]
    assert s.attrs["model"] == "tests_pkg.mod:factory"
    model = regressor()  # the checkpoint's weights, rebuilt independently
    for split, name in (("train", "file.npz"), ("test", "test.npz")):
        arrays = np.load(user_project / name)
        x, y = torch.tensor(arrays["x"], dtype=torch.float32), torch.tensor(arrays["y"], dtype=torch.float32)
        assert_matches_plain(s, model, split, lambda net: net(x), y, mse, acc=False)  # noqa: B023

    # the same model as a TorchScript file (trusted: it runs its own code): the same numbers
    code, _, err = run_cli(
        "surface", "--ckpt", "model.ts", "--trust-torchscript", "--data", "file.npz", "--data-test", "test.npz", "--loss", "mse",
        *grid, "--out", "ts.h5", "--quiet", cwd=user_project,
    )
    assert code == 0, err
    ts = landscape.read_surface(user_project / "ts.h5")
    np.testing.assert_allclose(ts.arrays["test_loss"], s.arrays["test_loss"], rtol=RTOL)

    # a data factory and a loss function, both named by import path
    code, _, err = run_cli(
        "surface", "--model", "tests_pkg.mod:factory", "--ckpt", "bare_state.pt", "--data", "tests_pkg.mod:data",
        "--splits", "train", "--loss", "tests_pkg.mod:mse_loss", "--x=-1:1:3", "--out", "f.h5", "--quiet",
        cwd=user_project,
    )
    assert code == 0, err
    f = landscape.read_surface(user_project / "f.h5")
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(40, 5, generator=g), torch.randn(40, 2, generator=g)
    assert_matches_plain(f, model, "train", lambda net: net(x), y, mse, acc=False)


def test_cli_bad_user_input_is_one_line(run_cli: RunCli, user_project: Path) -> None:
    code, _, err = run_cli(
        "surface", "--ckpt", "bare_state.pt", "--model", "tests_pkg.mod:broken", "--data", "file.npz",
        "--loss", "mse", "--x=-1:1:3", "--out", "e.h5", "--quiet", cwd=user_project,
    )
    assert code != 0
    assert "model factory 'tests_pkg.mod:broken' failed: ValueError: no such width: 7" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (user_project / "e.h5").exists()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"data": "bad.npz"}, "data file bad.npz has no arrays 'x' and 'y' (it has: inputs, labels)"),
        ({"data": "tests_pkg.mod:broken_data"},
         "data factory 'tests_pkg.mod:broken_data' failed: OSError: bucket not mounted"),
        ({"data": "file.npz", "loss": "tests_pkg.mod:nope"}, "cannot find loss 'tests_pkg.mod:nope'"),
    ],
)
def test_command_hooks_bad_input(
    user_project: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, str], expected: str
) -> None:
    # what `landscape surface` runs, in this process (the command prints the message as is)
    from landscape.jobs.compute import SurfaceConfig, compute_surface

    monkeypatch.chdir(user_project)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        msg = one_line_error(lambda: compute_surface(SurfaceConfig(
            ckpt="bare_state.pt", model="tests_pkg.mod:factory", splits=("train",), x="-1:1:3",
            out="e.h5", quiet=True, **{"loss": "mse", **options},
        )))
    finally:
        for name in [m for m in sys.modules if m.startswith("tests_pkg")]:
            sys.modules.pop(name)
    assert expected in msg
    assert not (user_project / "e.h5").exists()


# ---------------------------------------------------------------------------------------------
# MPI: every rank builds its own model and data (factories are called on every rank)


API_UNDER_MPI = """
    import landscape
    from tests_pkg.mod import dict_factory, token_loader

    common = dict(x="-1:1:3", y="-1:1:3", comm="mpi", points_per_pass=1)
    a = landscape.surface("tests_pkg.mod:factory", "file.npz", ckpt="bare_state.pt", loss="mse",
                          out="api_mpi.h5", **common)
    b = landscape.surface(dict_factory(), token_loader(), out="loader_mpi.h5", **common)
    assert a.computed.all() and b.computed.all() and b.attrs["runs"][-1]["ranks"] == 2
"""


def _run_mpi(args: list[str], cwd: Path) -> None:
    from conftest import cli_env, mpiexec_command

    proc = subprocess.run(
        [mpiexec_command(), "-n", "2", *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.mpi
def test_api_and_hooks_under_mpi_equal_serial(user_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (user_project / "run_api.py").write_text(textwrap.dedent(API_UNDER_MPI))
    _run_mpi([sys.executable, "run_api.py"], user_project)
    script = Path(__file__).resolve().parents[1] / "scripts" / "surface.py"
    _run_mpi([
        sys.executable, str(script), "--model", "tests_pkg.mod:factory", "--ckpt", "bare_state.pt",
        "--data", "tests_pkg.mod:data", "--splits", "train", "--loss", "mse", "--x=-1:1:3", "--y=-1:1:3",
        "--points-per-pass", "1", "--comm", "mpi", "--out", "cli_mpi.h5", "--quiet",
    ], user_project)
    calls = (user_project / "factory_calls.txt").read_text().split()
    assert sorted(calls) == ["0", "0", "1", "1"]  # each rank called the factory, in each run

    monkeypatch.chdir(user_project)
    monkeypatch.setattr(sys, "path", [str(user_project), *sys.path])
    try:
        from tests_pkg.mod import dict_factory, token_loader

        serial = {
            "api_mpi.h5": landscape.surface(
                "tests_pkg.mod:factory", "file.npz", ckpt="bare_state.pt", loss="mse", x="-1:1:3", y="-1:1:3"
            ),
            "loader_mpi.h5": landscape.surface(dict_factory(), token_loader(), x="-1:1:3", y="-1:1:3"),
            "cli_mpi.h5": landscape.surface(
                "tests_pkg.mod:factory", "tests_pkg.mod:data", ckpt="bare_state.pt", loss="mse",
                x="-1:1:3", y="-1:1:3",
            ),
        }
    finally:
        for name in [m for m in sys.modules if m.startswith("tests_pkg")]:
            sys.modules.pop(name)
    for name, ref in serial.items():
        par = landscape.read_surface(user_project / name)
        assert par.computed.all()
        assert par.attrs["runs"][-1]["ranks"] == 2, name
        for key in ref.arrays:
            if key.endswith(("_loss", "_acc")):
                np.testing.assert_allclose(par.arrays[key], ref.arrays[key], rtol=RTOL, err_msg=name)
