"""Tests of the checkpoint format and of loading foreign files (bare state dicts, paper files)."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from landscape.errors import LandscapeError
from landscape.io.checkpoint import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    build_model,
    clean_state_dict,
    load_checkpoint,
    save_checkpoint,
)
from landscape.models import create_model

FORMAT_KEYS = {
    "format", "version", "model", "model_kwargs", "state_dict", "data", "epoch", "metrics", "train"
}  # fmt: skip
SMALL_RESNET = {"in_channels": 1, "num_classes": 10, "width": 4}


def _trained_looking_resnet8(seed: int = 0) -> nn.Module:
    """resnet8 at width 4 with random weights and non-default BatchNorm statistics."""
    torch.manual_seed(seed)
    model = create_model("resnet8", **SMALL_RESNET)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # move the running statistics away from 0 / 1
            model(torch.randn(16, 1, 8, 8) * 3 + 1)
    return model.eval()


def _inputs() -> torch.Tensor:
    return torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(123))


def _assert_same_function(a: nn.Module, b: nn.Module) -> None:
    a.eval()
    b.eval()
    with torch.no_grad():
        assert torch.equal(a(_inputs()), b(_inputs()))


def _one_line(excinfo: pytest.ExceptionInfo[LandscapeError]) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


# ----------------------------------------------------------------------------- the format


def test_round_trip_gives_the_same_model(tmp_path: Path) -> None:
    model = _trained_looking_resnet8()
    metrics = {"train_loss": 0.25, "train_acc": 91.5, "test_loss": 0.5, "test_acc": 88.0}
    data = {"name": "digits", "split_seed": 0, "normalization": {"mean": [0.3], "std": [0.4]}}
    ckpt = Checkpoint(
        model="resnet8",
        model_kwargs=dict(SMALL_RESNET),
        state_dict=model.state_dict(),
        data=data,
        epoch=7,
        metrics=metrics,
    )
    path = save_checkpoint(ckpt, tmp_path / "sub" / "r8.pt")
    assert path == tmp_path / "sub" / "r8.pt"
    assert sorted(p.name for p in path.parent.iterdir()) == ["r8.pt"]  # no temporary left over

    # the file itself: a plain dict that torch loads with weights_only=True
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == FORMAT_KEYS
    assert raw["format"] == CHECKPOINT_FORMAT == "landscape-checkpoint"
    assert raw["version"] == 1 and raw["model"] == "resnet8" and raw["epoch"] == 7
    assert raw["model_kwargs"] == SMALL_RESNET and raw["data"] == data and raw["metrics"] == metrics
    assert raw["state_dict"].keys() == model.state_dict().keys()

    loaded = load_checkpoint(path)
    assert loaded.source == CHECKPOINT_FORMAT and loaded.path == str(path)
    assert (loaded.model, loaded.model_kwargs, loaded.epoch) == ("resnet8", SMALL_RESNET, 7)
    assert loaded.data == data and loaded.metrics == metrics
    rebuilt = build_model(loaded)
    assert not rebuilt.training
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    _assert_same_function(rebuilt, model)


def test_saved_state_is_a_copy(tmp_path: Path) -> None:
    model = _trained_looking_resnet8()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt = Checkpoint("resnet8", model.state_dict(), model_kwargs=dict(SMALL_RESNET))
    save_checkpoint(ckpt, tmp_path / "a.pt")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    loaded = load_checkpoint(tmp_path / "a.pt").state_dict
    assert all(torch.equal(loaded[k], before[k]) for k in before)


def test_model_and_kwargs_given_at_load_override_the_recorded_ones(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("mlp", in_channels=1, hidden=8)
    save_checkpoint(Checkpoint(model="mlp", state_dict=model.state_dict()), tmp_path / "m.pt")
    with pytest.raises(LandscapeError, match="shape mismatch"):
        build_model(load_checkpoint(tmp_path / "m.pt"))  # recorded kwargs say nothing: 3 channels
    loaded = load_checkpoint(tmp_path / "m.pt", model_kwargs={"in_channels": 1, "hidden": 8})
    _assert_same_function(build_model(loaded), model)


# ----------------------------------------------------------------------------- foreign files


def _data_parallel(model: nn.Module) -> dict[str, torch.Tensor]:
    return nn.DataParallel(model).state_dict()  # keys "module.<name>"


class _Compiled(nn.Module):
    """Stands in for torch.compile's OptimizedModule, which holds the model as `_orig_mod`.

    (The real wrapper gives the same keys but costs seconds of torch._dynamo import.)
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self._orig_mod = model


def _compiled(model: nn.Module) -> dict[str, torch.Tensor]:
    return _Compiled(model).state_dict()  # keys "_orig_mod.<name>"


def _both(model: nn.Module) -> dict[str, torch.Tensor]:
    return nn.DataParallel(_Compiled(model)).state_dict()  # keys "module._orig_mod.<name>"


@pytest.mark.parametrize(
    ("wrap", "prefix"),
    [(_data_parallel, "module."), (_compiled, "_orig_mod."), (_both, "module._orig_mod.")],
)
def test_bare_state_dict_with_wrapper_prefix(
    tmp_path: Path, wrap: Callable[[nn.Module], dict[str, torch.Tensor]], prefix: str
) -> None:
    model = _trained_looking_resnet8()
    state = wrap(model)
    assert all(key.startswith(prefix) for key in state)  # the wrapper really prefixes
    torch.save(state, tmp_path / "bare.pt")

    ckpt = load_checkpoint(tmp_path / "bare.pt", model="resnet8", model_kwargs=SMALL_RESNET)
    assert ckpt.source == "state_dict" and ckpt.model == "resnet8"
    assert set(ckpt.state_dict) == set(model.state_dict())
    _assert_same_function(build_model(ckpt), model)


def test_paper_style_dict(tmp_path: Path) -> None:
    model = _trained_looking_resnet8()
    # the paper's code saved {'acc', 'epoch', 'state_dict'}, often from a DataParallel model
    paper = {"acc": 93.12, "epoch": 300, "state_dict": _data_parallel(model)}
    torch.save(paper, tmp_path / "model_300.t7")

    ckpt = load_checkpoint(tmp_path / "model_300.t7", model="resnet8", model_kwargs=SMALL_RESNET)
    assert ckpt.source == "paper" and ckpt.epoch == 300
    _assert_same_function(build_model(ckpt), model)


def test_clean_state_dict_strips_prefixes_anywhere_and_drops_non_tensors() -> None:
    t = torch.zeros(1)
    state = {
        "module._orig_mod.fc.weight": t,
        "_orig_mod.module.fc.bias": t,
        "encoder._orig_mod.conv.weight": t,
        "plain.weight": t,
        "step": 3,
    }
    assert list(clean_state_dict(state)) == [
        "fc.weight",
        "fc.bias",
        "encoder.conv.weight",
        "plain.weight",
    ]


@pytest.mark.parametrize("kind", ["bare", "paper"])
def test_file_without_a_model_name_needs_model(tmp_path: Path, kind: str) -> None:
    state = create_model("mlp").state_dict()
    torch.save(state if kind == "bare" else {"state_dict": state, "acc": 1.0}, tmp_path / "x.pt")
    with pytest.raises(LandscapeError) as excinfo:
        load_checkpoint(tmp_path / "x.pt")
    assert "--model" in _one_line(excinfo)


# ----------------------------------------------------------------------------- mismatches


def test_resnet_weights_as_noshort_name_the_unexpected_shortcut_keys(tmp_path: Path) -> None:
    torch.save(create_model("resnet20").state_dict(), tmp_path / "r20.pt")
    ckpt = load_checkpoint(tmp_path / "r20.pt", model="resnet20_noshort")
    with pytest.raises(LandscapeError) as excinfo:
        build_model(ckpt)
    message = _one_line(excinfo)
    assert "unexpected keys" in message and "shortcut" in message
    assert "missing keys" not in message and "r20.pt" in message


def test_noshort_weights_as_resnet_name_the_missing_shortcut_keys(tmp_path: Path) -> None:
    torch.save(create_model("resnet20_noshort").state_dict(), tmp_path / "r20ns.pt")
    with pytest.raises(LandscapeError) as excinfo:
        build_model(load_checkpoint(tmp_path / "r20ns.pt", model="resnet20"))
    message = _one_line(excinfo)
    assert "missing keys" in message and "shortcut" in message
    assert "unexpected keys" not in message


def test_wrong_width_names_the_shape_mismatch(tmp_path: Path) -> None:
    torch.save(create_model("mlp", hidden=8).state_dict(), tmp_path / "m.pt")
    with pytest.raises(LandscapeError) as excinfo:
        build_model(load_checkpoint(tmp_path / "m.pt", model="mlp"))
    message = _one_line(excinfo)
    assert "shape mismatch" in message and "fc1.weight" in message


# ----------------------------------------------------------------------------- unreadable files


def _garbage(path: Path, kind: str) -> Path:
    if kind == "text":
        path.write_text("hello, I am not a checkpoint\n")
    elif kind == "random bytes":
        path.write_bytes(torch.randint(0, 256, (1000,), dtype=torch.uint8).numpy().tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "broken zip":
        path.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    elif kind == "truncated":
        torch.save(create_model("mlp").state_dict(), path)
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "directory":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    "kind", ["text", "random bytes", "empty", "broken zip", "truncated", "directory", "missing"]
)
def test_unreadable_file_gives_one_line_error(tmp_path: Path, kind: str) -> None:
    path = _garbage(tmp_path / "bad.pt", kind)
    with pytest.raises(LandscapeError) as excinfo:
        load_checkpoint(path, model="mlp")
    message = _one_line(excinfo)
    assert "bad.pt" in message
    assert ("does not exist" if kind == "missing" else "torch.save") in message


@pytest.mark.parametrize("obj", [[torch.zeros(2)], {}, {"a": 1}], ids=["list", "empty", "ints"])
def test_other_torch_files_are_not_checkpoints(tmp_path: Path, obj: object) -> None:
    torch.save(obj, tmp_path / "other.pt")
    with pytest.raises(LandscapeError) as excinfo:
        load_checkpoint(tmp_path / "other.pt", model="mlp")
    assert "not a checkpoint" in _one_line(excinfo)


def test_pickled_module_is_refused_with_advice(tmp_path: Path) -> None:
    torch.save(create_model("mlp"), tmp_path / "whole.pt")  # the whole nn.Module, pickled
    with pytest.raises(LandscapeError) as excinfo:
        load_checkpoint(tmp_path / "whole.pt", model="mlp")
    message = _one_line(excinfo)
    assert "pickled" in message and "state_dict()" in message


class _Payload:
    """Unpickling this object would create a file: proof that arbitrary code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def test_loading_never_runs_pickled_code(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    evil = {"state_dict": {"w": torch.zeros(1)}, "extra": _Payload(marker)}
    torch.save(evil, tmp_path / "evil.pt")
    with pytest.raises(LandscapeError):
        load_checkpoint(tmp_path / "evil.pt", model="mlp")
    assert not marker.exists()
