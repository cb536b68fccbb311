"""Files are data, never code: import paths stored in checkpoints and surface files never run.

A hostile checkpoint names a standard-library callable (or a module planted beside it) as its
model or data set, with keyword arguments of its choosing. Every command that reads the file is
run for real, in a subprocess, and each case checks the one-line refusal, the non-zero exit and
that the callable left no trace. A legitimate user factory still works when the user passes the
same path on the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import cli_env, landscape_command

# a module planted beside the hostile file: importing it at all would leave the marker
PLANTED = "import pathlib\npathlib.Path({marker!r}).write_text('imported')\ndef build(**kw):\n    pass\n"


def _cli(*args: str | os.PathLike[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = subprocess.run([landscape_command(), *map(str, args)], cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=180)
    return proc.returncode, proc.stdout, proc.stderr


def _hostile_ckpt(src: Path, dst: Path, model: str | None = None, kwargs: dict | None = None,
                  data: str | None = None) -> Path:
    """A copy of checkpoint `src` whose stored model / model_kwargs / data name are replaced."""
    payload = torch.load(src, weights_only=True)
    if model is not None:
        payload["model"] = model
        payload["model_kwargs"] = kwargs or {}
    if data is not None:
        payload["data"] = {**payload["data"], "name": data}
    torch.save(payload, dst)
    return dst


def _cases(tmp: Path) -> list[tuple[str, dict, Path]]:
    """(import path, keyword arguments, the marker the call would create) per callable."""
    m = {k: tmp / f"marker_{k}" for k in ("mkdir", "system", "call", "browser", "planted")}
    victim = tmp / "victim"
    victim.mkdir(exist_ok=True)
    (victim / "keep").write_text("keep")
    return [
        ("os:mkdir", {"path": str(m["mkdir"])}, m["mkdir"]),
        ("os:system", {"command": f"touch {m['system']}"}, m["system"]),
        ("subprocess:call", {"args": ["touch", str(m["call"])]}, m["call"]),
        ("webbrowser:open", {"url": str(m["browser"])}, m["browser"]),  # BROWSER='touch %s'
        ("shutil:rmtree", {"path": str(victim)}, victim / "keep"),  # must survive: checked apart
        ("builtins:exec", {}, m["planted"]),
        ("planted:build", {}, m["planted"]),  # the module itself writes the marker on import
    ]


def _env() -> dict[str, str]:
    env = cli_env()
    env["BROWSER"] = "touch %s"
    return env


def _assert_refused(code: int, err: str, what: str, path: str, option: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "files are data and are never imported" in lines[0]
    assert f"names its {what} by the import path {path!r}" in lines[0]
    assert f"pass {option} {path} yourself" in lines[0]


def _assert_nothing_ran(tmp: Path, marker: Path) -> None:
    if marker.name == "keep":
        assert marker.read_text() == "keep"  # shutil.rmtree did not run
    else:
        assert not marker.exists()
    assert not any(p.name.startswith("marker_") for p in tmp.iterdir())


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Path:
    (tmp_path / "planted.py").write_text(PLANTED.format(marker=str(tmp_path / "marker_planted")))
    return tmp_path


def test_stored_model_import_paths_never_run(tiny_ckpt: Path, hostile_dir: Path) -> None:
    """surface, info and hessian refuse every stored model import path; the callable never runs."""
    tmp = hostile_dir
    for i, (path, kwargs, marker) in enumerate(_cases(tmp)):
        ckpt = _hostile_ckpt(tiny_ckpt, tmp / f"evil{i}.pt", model=path, kwargs=kwargs)
        before = ckpt.read_bytes()
        runs = [
            ("surface", "--ckpt", ckpt, "--x=-1:1:3", "--out", "s.h5", "--quiet"),
            ("info", ckpt),
            ("hessian", "--ckpt", ckpt, "--top-k", "1", "--max-samples", "8"),
        ] if i < 2 else [("surface", "--ckpt", ckpt, "--x=-1:1:3", "--out", "s.h5", "--quiet")]
        for args in runs:
            code, _, err = _cli(*args, cwd=tmp, env=_env())
            _assert_refused(code, err, "model", path, "--model")
            _assert_nothing_ran(tmp, marker)
        assert not (tmp / "s.h5").exists() and not (tmp / "s.h5.lock").exists()
        assert ckpt.read_bytes() == before


def test_stored_data_import_paths_never_run(tiny_ckpt: Path, hostile_dir: Path) -> None:
    """A data set named by an import path (here a planted module) is refused by surface and hessian."""
    tmp = hostile_dir
    ckpt = _hostile_ckpt(tiny_ckpt, tmp / "evil_data.pt", data="planted:build")
    for args in (("surface", "--ckpt", ckpt, "--x=-1:1:3", "--out", "s.h5", "--quiet"),
                 ("hessian", "--ckpt", ckpt, "--top-k", "1")):
        code, _, err = _cli(*args, cwd=tmp)
        _assert_refused(code, err, "data set", "planted:build", "--data")
        _assert_nothing_ran(tmp, tmp / "marker_planted")
    code, out, err = _cli("info", ckpt, cwd=tmp)  # info only shows the name: nothing is loaded
    assert code == 0, err
    assert "planted:build" in out
    _assert_nothing_ran(tmp, tmp / "marker_planted")
    # the user's own --data is used instead of the stored one: the run works, nothing is imported
    code, _, err = _cli("surface", "--ckpt", ckpt, "--data", "digits", "--x=-1:1:3", "--out", "s.h5",
                        "--max-samples", "20", "--quiet", cwd=tmp)
    assert code == 0, err
    _assert_nothing_ran(tmp, tmp / "marker_planted")


def test_python_api_refuses_stored_import_paths(tiny_ckpt: Path, hostile_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import landscape
    from landscape.errors import LandscapeError

    monkeypatch.chdir(hostile_dir)
    marker = hostile_dir / "marker_mkdir"
    ckpt = _hostile_ckpt(tiny_ckpt, hostile_dir / "evil.pt", model="os:mkdir", kwargs={"path": str(marker)})
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    for call in (lambda: landscape.surface(str(ckpt), (x, y), x="-1:1:3"),
                 lambda: landscape.load_model(ckpt),
                 lambda: landscape.load_checkpoint(ckpt)):
        with pytest.raises(LandscapeError, match="files are data and are never imported: pass --model os:mkdir"):
            call()
        assert not marker.exists()


def test_stored_loss_and_names_in_surface_files_never_run(tiny_ckpt: Path, hostile_dir: Path) -> None:
    """A surface file whose loss, model and data name a planted module: reading, plotting,
    reusing its directions and resuming it never import the module."""
    tmp = hostile_dir
    code, _, err = _cli("surface", "--ckpt", tiny_ckpt, "--x=-1:1:3", "--y=-1:1:3", "--max-samples", "20",
                        "--out", "s.h5", "--quiet", cwd=tmp)
    assert code == 0, err
    with h5py.File(tmp / "s.h5", "r+") as f:
        settings = json.loads(f.attrs["settings"])
        settings["loss"] = "planted:build"
        f.attrs["settings"] = json.dumps(settings)
        f.attrs["loss"] = "planted:build"
        f.attrs["model"] = "planted:build"
        f.attrs["dataset"] = json.dumps({"name": "planted:build"})
    for args in (("info", "s.h5"), ("plot", "s.h5", "--kind", "contour", "--surf", "train_loss"),
                 ("surface", "--ckpt", tiny_ckpt, "--x=-1:1:3", "--y=-1:1:3", "--dirs", "s.h5",
                  "--max-samples", "20", "--out", "t.h5", "--quiet")):
        code, _, err = _cli(*args, cwd=tmp)
        assert code == 0, err
        _assert_nothing_ran(tmp, tmp / "marker_planted")
    # resuming: the stored loss is only compared with this run's, never imported
    code, _, err = _cli("surface", "--ckpt", tiny_ckpt, "--x=-1:1:3", "--y=-1:1:3", "--max-samples", "20",
                        "--out", "s.h5", "--quiet", cwd=tmp)
    assert code != 0 and "loss: file has 'planted:build'" in err
    _assert_nothing_ran(tmp, tmp / "marker_planted")


USER_CODE = """
import torch
from torch import nn

def build(in_channels=1, num_classes=10, hidden=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))

def data():
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randn(40, 1, 8, 8, generator=g), "y": torch.randint(0, 10, (40,), generator=g)}
"""


def test_a_trusted_factory_passed_by_the_user_still_works(tmp_path: Path) -> None:
    """A checkpoint trained with the user's own model and data factories: refused until the user
    passes the same paths, then computed."""
    (tmp_path / "mynets.py").write_text(USER_CODE)
    code, _, err = _cli("train", "--model", "mynets:build", "--data", "mynets:data", "--epochs", "1",
                        "--device", "cpu", "--quiet", "--out", "c.pt", cwd=tmp_path)
    assert code == 0, err
    args = ("surface", "--ckpt", "c.pt", "--x=-1:1:3", "--out", "s.h5", "--splits", "train", "--quiet")
    code, _, err = _cli(*args, cwd=tmp_path)
    _assert_refused(code, err, "model", "mynets:build", "--model")
    code, _, err = _cli(*args, "--model", "mynets:build", cwd=tmp_path)
    _assert_refused(code, err, "data set", "mynets:data", "--data")
    assert not (tmp_path / "s.h5").exists()
    code, _, err = _cli(*args, "--model", "mynets:build", "--data", "mynets:data", cwd=tmp_path)
    assert code == 0, err
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert np.isfinite(f["train_loss"][()]).all()


def test_cifar_pickles_load_only_arrays(tmp_path: Path) -> None:
    """A CIFAR file that pickles a callable is refused before the callable runs."""
    import pickle

    from landscape.data.sources import load_dataset, write_cifar_like
    from landscape.errors import LandscapeError

    base = write_cifar_like(tmp_path, "cifar10", n_per_file=4)
    assert load_dataset("cifar10", root=tmp_path).x_train.shape == (20, 3, 32, 32)  # the real layout loads
    marker = tmp_path / "marker"

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (os.makedirs, (str(marker),))

    with open(base / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(LandscapeError, match="refusing to load os.makedirs"):
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_info_describes_torchscript_without_loading_it(tmp_path: Path) -> None:
    """A TorchScript archive is a model with its own code: `info` reads its zip directory only."""
    from landscape.jobs.info import describe

    net = torch.nn.Sequential(torch.nn.Linear(4, 3))
    torch.jit.script(net).save(str(tmp_path / "m.pt"))
    text = describe(tmp_path / "m.pt")
    assert "torchscript (a model with its own code: not loaded by info)" in text
    assert "tensor records: 2" in text


def test_stored_model_kwargs_are_values_never_imported(tiny_ckpt: Path, hostile_dir: Path) -> None:
    """An import path as a keyword value goes to the registry builder as a plain string: the
    build fails in one line, and nothing is imported."""
    ckpt = _hostile_ckpt(tiny_ckpt, hostile_dir / "kw.pt", model="mlp", kwargs={"hidden": "planted:build"})
    code, _, err = _cli("surface", "--ckpt", ckpt, "--x=-1:1:3", "--out", "s.h5", cwd=hostile_dir)
    assert code != 0 and len(err.strip().splitlines()) == 1, err
    assert "cannot be built from the stored model_kwargs hidden='planted:build'" in err
    _assert_nothing_ran(hostile_dir, hostile_dir / "marker_planted")
    assert not (hostile_dir / "s.h5").exists()
