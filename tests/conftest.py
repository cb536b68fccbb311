"""Shared fixtures: tiny trained checkpoints, an in-process runner for the `landscape` command,
the one `mpiexec` lookup, and the `e2e` marker on end-to-end tests.

Markers: `e2e` marks end-to-end runs (the command, scripts, subprocesses, MPI); it is set here
on every test of the end-to-end modules and on every test that runs the command, so
`pytest -m "not e2e"` runs the unit tests alone.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

# The test machine has two cores shared with other jobs: more than one intra-op thread per
# process makes tiny models much slower (threads wait for each other), never faster.
torch.set_num_threads(1)
# ... also for commands run in this process: their thread settings (landscape.cli.options.thread_settings)
# keep the user's OMP_NUM_THREADS, and otherwise take every core the process may use
os.environ.setdefault("OMP_NUM_THREADS", "1")
# An unexpected exception reaching a command's edge is one line for a user; in the tests it also
# prints its traceback (landscape.cli.edge), so a test that expects a clean refusal ("one line,
# no Traceback") still catches a bug that merely became a line. tests/test_entry.py turns it off.
os.environ.setdefault("LANDSCAPE_DEBUG", "1")

# (exit code, stdout, stderr) of one run of the command
CliResult = tuple[int, str, str]
RunCli = Callable[..., CliResult]

# Training settings of `tiny_ckpt`, so tests can rebuild the same data and model independently.
TINY_MODEL = "mlp"
TINY_MODEL_KWARGS = {"hidden": 16}
TINY_DATA = "digits"
TINY_EPOCHS = 2


def landscape_command() -> str:
    """The installed console script: next to this interpreter in the venv, else on PATH."""
    beside = Path(sys.executable).with_name("landscape")
    if beside.exists():
        return str(beside)
    found = shutil.which("landscape")
    if found is None:
        pytest.skip("the `landscape` console script is not installed")
    return found


def mpi_required() -> bool:
    """LANDSCAPE_REQUIRE_MPI=1 (CI): a missing mpiexec or mpi4py fails a test instead of skipping it."""
    return os.environ.get("LANDSCAPE_REQUIRE_MPI") == "1"


def mpiexec_command() -> str:
    """The mpich wheel's `mpiexec` beside this interpreter (or one on PATH); skip without it or
    without mpi4py, unless `mpi_required()`, where a missing MPI fails the test. The one lookup
    every MPI test uses."""
    beside = Path(sys.executable).with_name("mpiexec")
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        found = None
    if found is None:
        if mpi_required():
            pytest.fail("mpiexec or mpi4py is missing (LANDSCAPE_REQUIRE_MPI=1): pip install mpi4py mpich")
        pytest.skip("mpiexec or mpi4py is not installed (pip install mpi4py mpich)")
    return found


def compile_may_be_rejected() -> bool:
    """Whether torch.compile may disagree with eager here, so the engine keeps eager.

    Seen with ATEN_CPU_CAPABILITY=avx2 on an AVX-512 CPU (torch 2.13, CI's AVX2-limited run): the
    compiled ResNet-8 returned NaN. The engine checks the compiled model against eager at the
    first point and falls back; the tests then check that fallback instead of the compile.
    """
    return bool(os.environ.get("ATEN_CPU_CAPABILITY"))


def assert_compiled_or_rejected(compiled: bool, reason: str, asked: str) -> None:
    """The plan compiled (`asked`: the reason text expected), or, where compile may be rejected,
    fell back to eager after seeing the compiled values differ."""
    if compile_may_be_rejected() and not compiled:
        assert "torch.compile differs from eager, eager" in reason, reason
    else:
        assert compiled is True and asked in reason, reason


def cli_env() -> dict[str, str]:
    """The environment of every CLI subprocess: no CUDA device, few threads (the machine is shared)."""
    env = dict(os.environ)
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    return env


def run_cli_in(cwd: Path, *args: str | os.PathLike[str], timeout: float = 120, all_cores: bool = True) -> CliResult:
    """Run the installed `landscape ARGS...` in a subprocess in `cwd`; with `all_cores`, torch
    keeps its default thread count (what the demo test measures)."""
    env = cli_env()
    if all_cores:
        env.pop("OMP_NUM_THREADS")
    proc = subprocess.run(
        [landscape_command(), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return proc.returncode, proc.stdout, proc.stderr


def run_cli_here(cwd: Path, *args: str | os.PathLike[str]) -> CliResult:
    """Run `landscape ARGS...` in this process (`landscape.cli.main`), in `cwd`; return (exit
    code, stdout, stderr). `sys.path`, the working directory and modules imported from `cwd` (a
    user's package named by an import path) are restored afterwards, as a new process would have
    them."""
    from landscape.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_path, old_modules = os.getcwd(), list(sys.path), set(sys.modules)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:  # argparse: --help, --version, a bad option
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path
        here = str(Path(cwd).resolve())
        for name in set(sys.modules) - old_modules:
            where = getattr(sys.modules[name], "__file__", None) or ""
            if where.startswith(here):
                del sys.modules[name]
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """Run `landscape ARGS...` in this process (cwd: a fresh tmp dir); return (code, out, err).

    Example:
        code, out, err = run_cli("models", "resnet*")
    """

    def run(*args: str | os.PathLike[str], cwd: Path | None = None, timeout: float = 120) -> CliResult:
        return run_cli_here(cwd or tmp_path, *args)

    return run


# modules whose every test is end-to-end (subprocesses, mpiexec, the whole demo)
E2E_MODULES = ("test_cli", "test_mpi", "test_skip_study", "test_demo")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark end-to-end tests `e2e` (see the module docstring)."""
    for item in items:
        module = getattr(item, "module", None)
        name = module.__name__.rsplit(".", 1)[-1] if module is not None else ""
        uses_cli = "run_cli" in getattr(item, "fixturenames", ())
        if name in E2E_MODULES or uses_cli or item.get_closest_marker("mpi") or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of `mlp` (hidden 16) trained for 2 epochs on digits, written once per session.

    Treat it as read-only; copy it before changing it.
    """
    out = tmp_path_factory.mktemp("tiny_ckpt") / "mlp_digits.pt"
    return _train_tiny(out, TINY_MODEL, TINY_MODEL_KWARGS, TINY_EPOCHS)


# Training settings of `tiny_resnet_ckpt`: the real ResNet-8 at width 4 (BatchNorm, convolutions,
# a projection shortcut), with a snapshot per epoch for interpolation and PCA directions.
RESNET_MODEL = "resnet8"
RESNET_MODEL_KWARGS = {"width": 4}
RESNET_EPOCHS = 2


def _train_tiny(
    out: Path, model: str, model_kwargs: dict, epochs: int, save_every: int = 0
) -> Path:
    """Train `model` on TINY_DATA (seed 0, CPU, quiet) into `out`."""
    from landscape.jobs.train import TrainConfig, train

    config = TrainConfig(
        model=model,
        model_kwargs=dict(model_kwargs),
        data=TINY_DATA,
        epochs=epochs,
        seed=0,
        device="cpu",
        out=str(out),
        save_every=save_every,
        quiet=True,
    )
    train(config)
    return out


@pytest.fixture(scope="session")
def tiny_resnet_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`resnet8` (width 4) trained 2 epochs on digits, with snapshots epoch_0000..0002.pt.

    The snapshots are in `landscape.jobs.train.snapshot_dir(path)`; epoch_0002.pt is the final
    model. Treat all of them as read-only.
    """
    out = tmp_path_factory.mktemp("tiny_resnet") / "resnet8_digits.pt"
    return _train_tiny(out, RESNET_MODEL, RESNET_MODEL_KWARGS, RESNET_EPOCHS, save_every=1)


@pytest.fixture(scope="session")
def tiny_traj_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mlp` (hidden 16) trained 3 epochs on digits by `landscape train --save-every 1`.

    The snapshots epoch_0000..0003.pt (for --pca) are in `landscape.jobs.train.snapshot_dir(path)`.
    """
    import json

    cwd = tmp_path_factory.mktemp("tiny_traj")
    proc = subprocess.run(
        [landscape_command(), "train", "--model", TINY_MODEL, "--model-kwargs",
         json.dumps(TINY_MODEL_KWARGS), "--data", TINY_DATA, "--epochs", "3", "--save-every", "1",
         "--device", "cpu", "--quiet", "--out", "mlp_traj.pt"],
        cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return cwd / "mlp_traj.pt"


def plain_evaluate(
    model: str,
    model_kwargs: dict,
    state: dict,
    splits: dict,
    batch_size: int = 97,
) -> dict[str, float]:
    """Independent reference: mean cross-entropy and accuracy (%) of a state dict, plain PyTorch.

    A fresh model gets `state` through `load_state_dict`, runs in eval mode batch by batch;
    losses are summed (`F.cross_entropy(..., reduction="sum")`) and divided by the sample count.
    """
    import torch
    import torch.nn.functional as F

    from landscape.models import create_model

    net = create_model(model, **model_kwargs)
    net.load_state_dict(state)
    net.eval()
    out: dict[str, float] = {}
    with torch.no_grad():
        for name, (x, y) in splits.items():
            total, correct = 0.0, 0
            for i in range(0, len(x), batch_size):
                logits = net(x[i : i + batch_size])
                total += float(F.cross_entropy(logits, y[i : i + batch_size], reduction="sum"))
                correct += int((logits.argmax(1) == y[i : i + batch_size]).sum())
            out[f"{name}_loss"] = total / len(x)
            out[f"{name}_acc"] = 100.0 * correct / len(x)
    return out


def plain_reestimate_bn(model: str, model_kwargs: dict, state: dict, x: torch.Tensor, batch_size: int) -> dict:
    """Independent reference for `--bn recompute`: the state dict after plain BN re-estimation.

    A fresh model gets `state`; every BatchNorm is reset with momentum None (a cumulative
    average), then the model runs in train mode over `x` in batches of `batch_size`.
    """
    from torch import nn

    from landscape.models import create_model

    net = create_model(model, **model_kwargs)
    net.load_state_dict(state)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            net(x[i : i + batch_size])
    return net.state_dict()


def digits_splits(max_samples: int | None = None) -> dict:
    """The digits train/test tensors (split seed 0), each cut to its first `max_samples`."""
    from landscape.data.sources import load_dataset

    ds = load_dataset("digits")
    n = max_samples
    return {
        "train": (ds.x_train[:n], ds.y_train[:n]),
        "test": (ds.x_test[:n], ds.y_test[:n]),
    }
