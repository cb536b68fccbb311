"""Checkpoints written by other code: the paper's `model_300.t7`, plain PyTorch, old torch.

Every file here is built with today's torch the way the other tool built it: the legacy (pre-zip)
pickle format (`_use_new_zipfile_serialization=False`), BatchNorm state without
`num_batches_tracked` and with the module versions old torch recorded in `_metadata`, storages
tagged `cuda:0` (torch.serialization.location_tag patched while saving, so the file names a GPU
this machine does not have), wrapper dicts and DataParallel / torch.compile prefixes. Loaded
weights are compared bit for bit with the source model.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.serialization
from torch import nn

from landscape.errors import LandscapeError
from landscape.io.checkpoint import build_model, load_checkpoint
from landscape.models import create_model

SMALL = {"in_channels": 1, "num_classes": 10, "width": 4}
COUNTER = "num_batches_tracked"


def _resnet8() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("resnet8", **SMALL)
    with torch.no_grad():  # BatchNorm statistics away from 0 / 1, so a lost buffer shows
        for name, buf in model.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                buf.copy_(torch.rand_like(buf) + 0.5)
    return model.eval()


def old_torch_state(model: nn.Module, versions: str = "old") -> collections.OrderedDict:
    """The state dict as torch before 0.4.1 saved it: no `num_batches_tracked`, and (`old`) the
    BatchNorm modules recorded at version 1 in `_metadata`; `none`: no `_metadata` at all;
    `new`: today's versions kept (a file whose counters were removed by hand)."""
    state = model.state_dict()
    meta = state._metadata  # type: ignore[attr-defined]
    out = collections.OrderedDict((k, v) for k, v in state.items() if not k.endswith(COUNTER))
    if versions != "none":
        out._metadata = collections.OrderedDict(  # type: ignore[attr-defined]
            (k, {**v, "version": 1} if versions == "old" and "version" in v and v["version"] == 2 else dict(v))
            for k, v in meta.items()
        )
    return out


def _prefixed(state: collections.OrderedDict, prefix: str) -> collections.OrderedDict:
    out = collections.OrderedDict((prefix + k, v) for k, v in state.items())
    if hasattr(state, "_metadata"):
        out._metadata = collections.OrderedDict(  # type: ignore[attr-defined]
            ((prefix[:-1] + ("." + k if k else "")) if prefix else k, v) for k, v in state._metadata.items()
        )
    return out


def save_as(obj: object, path: Path, legacy: bool, location: str = "cpu") -> Path:
    """torch.save, in the legacy or zip format, with every storage tagged `location`."""
    original = torch.serialization.location_tag
    torch.serialization.location_tag = lambda storage: location  # type: ignore[assignment]
    try:
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    finally:
        torch.serialization.location_tag = original  # type: ignore[assignment]
    return path


WRAPPERS: dict[str, Callable[[object], object]] = {
    "bare": lambda s: s,
    "state_dict": lambda s: {"state_dict": s},
    "model": lambda s: {"model": s, "optimizer": {"lr": 0.1}},
    "net": lambda s: {"net": s, "acc": 93.1, "epoch": 299},
    "paper": lambda s: {"acc": 93.66, "epoch": 300, "state_dict": s},
}


def _assert_bitwise(loaded: nn.Module, source: nn.Module) -> None:
    got, want = loaded.state_dict(), source.state_dict()
    assert list(got) == list(want)
    for key, value in want.items():
        if key.endswith(COUNTER):
            assert got[key].dtype == torch.long and int(got[key]) == 0, key  # what torch fills
        else:
            assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
@pytest.mark.parametrize("location", ["cpu", "cuda:0"])
@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod."])
@pytest.mark.parametrize("wrapper", list(WRAPPERS))
def test_every_layout_loads_bit_for_bit(
    tmp_path: Path, legacy: bool, location: str, prefix: str, wrapper: str
) -> None:
    source = _resnet8()
    state = _prefixed(old_torch_state(source), prefix)
    path = save_as(WRAPPERS[wrapper](state), tmp_path / "model_300.t7", legacy, location)
    assert (location.encode() in path.read_bytes()) or not legacy  # the file really names the device
    ckpt = load_checkpoint(path, model="resnet8", model_kwargs=SMALL)
    assert ckpt.epoch == (300 if wrapper == "paper" else 299 if wrapper == "net" else None)
    _assert_bitwise(build_model(ckpt), source)


@pytest.mark.parametrize("versions", ["old", "none"])
def test_missing_counters_are_filled_as_torch_fills_them(tmp_path: Path, versions: str) -> None:
    """torch's BatchNorm._load_from_state_dict puts 0 for an absent counter when the module's
    recorded version is below 2 or unknown; our load gives the same module as torch's own."""
    source = _resnet8()
    state = old_torch_state(source, versions)
    by_torch = create_model("resnet8", **SMALL)
    by_torch.load_state_dict(state, strict=True)  # torch itself accepts these files
    path = save_as({"state_dict": state}, tmp_path / "old.t7", legacy=True)
    ours = build_model(load_checkpoint(path, model="resnet8", model_kwargs=SMALL))
    for key, value in by_torch.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_counters_removed_from_a_new_file_are_refused_as_torch_refuses(tmp_path: Path) -> None:
    state = old_torch_state(_resnet8(), "new")
    with pytest.raises(RuntimeError, match=COUNTER):
        create_model("resnet8", **SMALL).load_state_dict(state, strict=True)
    path = save_as(state, tmp_path / "cut.pt", legacy=False)
    with pytest.raises(LandscapeError) as excinfo:
        build_model(load_checkpoint(path, model="resnet8", model_kwargs=SMALL))
    message = str(excinfo.value)
    assert "\n" not in message and f"missing keys bn1.{COUNTER}" in message


@pytest.mark.parametrize("damage", ["missing", "misshaped"])
def test_a_real_missing_or_misshaped_weight_is_still_one_line(tmp_path: Path, damage: str) -> None:
    state = old_torch_state(_resnet8())
    if damage == "missing":
        del state["layer1.0.conv1.weight"]
    else:
        state["linear.weight"] = torch.zeros(3, 3)
    path = save_as({"acc": 1.0, "epoch": 3, "state_dict": state}, tmp_path / "bad.t7", legacy=True)
    with pytest.raises(LandscapeError) as excinfo:
        build_model(load_checkpoint(path, model="resnet8", model_kwargs=SMALL))
    message = str(excinfo.value)
    assert "\n" not in message
    assert ("missing keys layer1.0.conv1.weight" if damage == "missing" else "linear.weight (3, 3)") in message
    assert COUNTER not in message  # the fillable counters are not named as missing


def paper_resnet56_file(path: Path, seed: int = 0) -> tuple[Path, nn.Module]:
    """A file shaped like the paper's `model_300.t7` for ResNet-56: legacy pickle, keys exactly
    the zoo's minus the BatchNorm counters (the paper's code's names), storages on cuda:0."""
    torch.manual_seed(seed)
    source = create_model("resnet56").eval()
    state = old_torch_state(source)
    assert set(state) == {k for k in source.state_dict() if not k.endswith(COUNTER)}
    save_as({"acc": 93.66, "epoch": 300, "state_dict": state}, path, legacy=True, location="cuda:0")
    return path, source


def test_paper_resnet56_file_loads_into_the_zoo_resnet56(tmp_path: Path) -> None:
    path, source = paper_resnet56_file(tmp_path / "model_300.t7")
    ckpt = load_checkpoint(path, model="resnet56")
    assert ckpt.source == "paper" and ckpt.epoch == 300 and ckpt.data == {}
    _assert_bitwise(build_model(ckpt), source)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "landscape", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


PAPER_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
PAPER_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)


def _paper_inputs(root: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` train images of a CIFAR folder, normalized with the paper's constants by
    hand (numpy, not our loader)."""
    import pickle

    with open(root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    raw = np.asarray(batch[b"data"], dtype=np.float64).reshape(-1, 3, 32, 32)[:n] / 255.0
    x = (raw - np.array(PAPER_MEAN).reshape(1, 3, 1, 1)) / np.array(PAPER_STD).reshape(1, 3, 1, 1)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(batch[b"labels"][:n])


@pytest.mark.parametrize("net", ["resnet8", "resnet56"])
def test_surface_from_the_papers_checkpoint_file(tmp_path: Path, net: str) -> None:
    """End to end: `landscape surface --ckpt model_300.t7 --model NET --data cifar10 --data-root
    DIR` on a legacy, cuda-tagged, counter-less (DataParallel for resnet8) file gives a 3x3
    surface whose centre is plain PyTorch's loss of the source model on the inputs normalized
    with the paper's constants (the default for a file from the paper's code)."""
    from landscape.data.sources import write_cifar_like

    write_cifar_like(tmp_path / "cifar", "cifar10", n_per_file=4)
    if net == "resnet56":
        _, source = paper_resnet56_file(tmp_path / "model_300.t7")
    else:
        torch.manual_seed(0)
        source = create_model(net).eval()
        state = _prefixed(old_torch_state(source), "module.")
        save_as({"acc": 50.0, "epoch": 300, "state_dict": state}, tmp_path / "model_300.t7", True, "cuda:0")
    run = _cli("surface", "--ckpt", "model_300.t7", "--model", net, "--data", "cifar10",
               "--data-root", "cifar", "--x=-1:1:3", "--y=-1:1:3", "--max-samples", "4",
               "--splits", "train", "--out", "s.h5", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    x, y = _paper_inputs(tmp_path / "cifar", 4)
    with torch.no_grad():
        want = nn.functional.cross_entropy(source(x), y).item()
    with h5py.File(tmp_path / "s.h5", "r") as f:
        loss = f["train_loss"][()]
    assert loss.shape == (3, 3) and np.isfinite(loss).all()
    assert abs(loss[1, 1] - want) <= 1e-5 * abs(want)


# ----------------------------------------------------------------------------- hostile state dicts


# peak memory of this process since its exec (VmHWM; ru_maxrss carries the parent's over exec)
_HWM = (
    "def _hwm_kb():\n"
    "    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])\n"
)


def _linear_state() -> dict[str, torch.Tensor]:
    return {"weight": torch.randn(3, 4), "bias": torch.randn(3)}


BAD_STATES: dict[str, tuple[Callable[[], dict], str]] = {
    "int key": (lambda: {1: torch.zeros(2), "weight": torch.zeros(3, 4)}, "key 1 is a int"),
    "meta tensor": (lambda: {**_linear_state(), "weight": torch.zeros(3, 4, device="meta")}, "meta tensor"),
    "sparse tensor": (lambda: {**_linear_state(), "weight": torch.zeros(3, 4).to_sparse()}, "sparse_coo tensor"),
    "complex weight": (lambda: {**_linear_state(), "weight": torch.zeros(3, 4, dtype=torch.complex64)}, "complex64"),
    "broadcast view": (lambda: {**_linear_state(), "weight": torch.zeros(1).expand(3, 4)}, "broadcast view"),
}


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_hostile_state_dicts_are_one_line(tmp_path: Path, case: str) -> None:
    make, expected = BAD_STATES[case]
    torch.save(make(), tmp_path / "bad.pt")
    with pytest.raises(LandscapeError) as excinfo:
        build_model(load_checkpoint(tmp_path / "bad.pt", model="torch.nn:Linear", model_kwargs={"in_features": 4, "out_features": 3}))
    message = str(excinfo.value)
    assert "\n" not in message and expected in message and "bad.pt" in message


def test_an_integer_tensor_for_a_float_weight_is_refused(tmp_path: Path) -> None:
    torch.save({**_linear_state(), "weight": torch.ones(3, 4, dtype=torch.int64)}, tmp_path / "int.pt")
    with pytest.raises(LandscapeError) as excinfo:
        build_model(load_checkpoint(tmp_path / "int.pt", model="torch.nn:Linear",
                                    model_kwargs={"in_features": 4, "out_features": 3}))
    assert "dtype mismatch weight int64 for float32" in str(excinfo.value)


def test_a_compressed_archive_is_refused_before_it_expands(tmp_path: Path) -> None:
    """A 0.6 MB zip whose records deflate to 600 MB: torch.load would allocate it all."""
    import zipfile

    torch.save({"weight": torch.zeros(150_000_000)}, tmp_path / "big.pt")
    with zipfile.ZipFile(tmp_path / "big.pt") as zin, \
            zipfile.ZipFile(tmp_path / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as zout:
        for name in zin.namelist():
            zout.writestr(name, zin.read(name))
    (tmp_path / "big.pt").unlink()
    assert (tmp_path / "bomb.pt").stat().st_size < 1_000_000
    code = (
        _HWM + "from landscape.jobs.info import describe\nfrom landscape.errors import LandscapeError\n"
        f"try:\n    describe({str(tmp_path / 'bomb.pt')!r})\n"
        "except LandscapeError as e:\n    print('REFUSED', e)\n"
        "print(_hwm_kb())\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    lines = run.stdout.strip().splitlines()
    assert lines and lines[0].startswith("REFUSED") and "expand to 600 MB" in lines[0], run.stdout + run.stderr
    assert int(lines[-1]) < 500_000  # kB: torch and numpy alone; the expanded record would be 600 MB more


def test_interpolation_between_two_old_files(tmp_path: Path) -> None:
    """--ckpt2 with two paper-style files (no counters): the line's ends are the two models."""
    from landscape.jobs.compute import SurfaceConfig, compute_surface

    write = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = create_model("resnet8").eval()
        write[seed] = net
        save_as({"acc": 1.0, "epoch": 3, "state_dict": old_torch_state(net)}, tmp_path / f"m{seed}.t7", legacy=True)
    from landscape.data.sources import write_cifar_like

    write_cifar_like(tmp_path / "cifar", "cifar10", n_per_file=2)
    cfg = SurfaceConfig(ckpt=str(tmp_path / "m0.t7"), ckpt2=str(tmp_path / "m1.t7"), model="resnet8",
                        data="cifar10", data_root=str(tmp_path / "cifar"), x="0:1:2", splits=("train",),
                        out=str(tmp_path / "line.h5"), quiet=True)
    compute_surface(cfg)
    from landscape.data.sources import (
        load_dataset,  # the paper's constants: the files record no data set
    )

    x = load_dataset("cifar10", root=tmp_path / "cifar", normalization="paper").x_train
    y = load_dataset("cifar10", root=tmp_path / "cifar").y_train
    with h5py.File(tmp_path / "line.h5", "r") as f:
        loss = f["train_loss"][()]
    with torch.no_grad():
        for i, seed in enumerate((0, 1)):
            want = nn.functional.cross_entropy(write[seed](x), y).item()
            assert abs(loss[i] - want) <= 1e-5 * abs(want)


@pytest.mark.parametrize(("spec", "preset"), [(None, "paper"), ("landscape", None), ("0.5,0.25", "custom")])
def test_the_normalization_is_stored_in_the_surface_file(tmp_path: Path, spec: str | None, preset: str | None) -> None:
    from landscape.data.sources import write_cifar_like
    from landscape.io.storage import read_surface
    from landscape.jobs.compute import SurfaceConfig, compute_surface

    torch.manual_seed(0)
    save_as({"acc": 1.0, "epoch": 3, "state_dict": old_torch_state(create_model("resnet8"))},
            tmp_path / "m.t7", legacy=True)
    write_cifar_like(tmp_path / "cifar", "cifar10", n_per_file=2)
    cfg = SurfaceConfig(ckpt=str(tmp_path / "m.t7"), model="resnet8", data="cifar10", normalization=spec,
                        data_root=str(tmp_path / "cifar"), x="-1:1:3", splits=("train",),
                        out=str(tmp_path / "s.h5"), quiet=True)
    compute_surface(cfg)
    norm = read_surface(tmp_path / "s.h5").attrs["dataset"]["normalization"]
    assert norm.get("preset") == preset
    want = {"paper": 125.3 / 255, None: 0.4914, "custom": 0.5}[preset]
    assert norm["mean"][0] == pytest.approx(want, rel=1e-12)
