"""Threads from the cores a process may really use, OpenMP's waiting, and `--threads`.

The cgroup readers are tested on fake cgroup trees in tmp_path; the edge (`thread_settings`)
in this process and in a subprocess of the installed command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch
from conftest import cli_env, landscape_command

from landscape.cli.options import thread_settings
from landscape.system.mpi_env import rank_threads
from landscape.system.threads import (
    CpuLimits,
    cgroup_quota,
    default_threads,
    machine_busy,
    others_running,
    parse_cfs_quota,
    parse_cpu_max,
    sample_others,
    thread_environment,
)


def test_parse_quota_files() -> None:
    assert parse_cpu_max("max 100000\n") is None
    assert parse_cpu_max("200000 100000\n") == 2.0
    assert parse_cpu_max("50000 100000") == 0.5
    assert parse_cpu_max("") is None
    assert parse_cpu_max("garbage here") is None
    assert parse_cfs_quota("-1\n", "100000\n") is None
    assert parse_cfs_quota("300000\n", "100000\n") == 3.0
    assert parse_cfs_quota("150000", "0") is None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_takes_the_tightest_ancestor(tmp_path: Path) -> None:
    _write(tmp_path / "cpu.max", "max 100000\n")
    _write(tmp_path / "jobs" / "cpu.max", "150000 100000\n")  # parent: 1.5 cores
    _write(tmp_path / "jobs" / "me" / "cpu.max", "400000 100000\n")  # own: 4 cores
    assert cgroup_quota(tmp_path, "0::/jobs/me\n") == 1.5
    assert cgroup_quota(tmp_path, "0::/elsewhere\n") is None  # only the root: unlimited


def test_cgroup_v2_in_a_container_mounted_at_root(tmp_path: Path) -> None:
    _write(tmp_path / "cpu.max", "300000 100000\n")
    assert cgroup_quota(tmp_path, "0::/\n") == 3.0


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    proc = "12:memory:/x\n4:cpu,cpuacct:/docker/abc\n0::/\n"
    _write(tmp_path / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "200000\n")
    _write(tmp_path / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    _write(tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    _write(tmp_path / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_quota(tmp_path, proc) == 2.0
    # no cgroup files at all (not Linux, or nothing mounted): no limit
    assert cgroup_quota(tmp_path / "missing", proc) is None


def test_threads_from_affinity_quota_and_ranks() -> None:
    assert default_threads(CpuLimits(cpus=16)) == 16
    assert default_threads(CpuLimits(cpus=16, affinity=6)) == 6
    assert default_threads(CpuLimits(cpus=16, quota=2.5)) == 2  # a fractional core is not used
    assert default_threads(CpuLimits(cpus=16, quota=0.5)) == 1
    assert default_threads(CpuLimits(cpus=16, quota=8.0), ranks_per_node=4) == 2
    assert default_threads(CpuLimits(cpus=2), ranks_per_node=5) == 1
    # bound by the launcher to 4 cores per rank: the mask is already this rank's share
    assert default_threads(CpuLimits(cpus=64, affinity=4), ranks_per_node=4) == 4
    assert default_threads(CpuLimits(cpus=8), env={"OMP_NUM_THREADS": "3"}) is None
    assert default_threads(CpuLimits(cpus=8), env={"OMP_NUM_THREADS": ""}) == 8
    assert rank_threads(2, cpus=16, quota=4.0) == 2
    assert rank_threads(2, cpus=16, omp="5", quota=4.0) is None
    assert CpuLimits(cpus=16, affinity=8, quota=4.0).describe() == (
        "16 cores, 8 in the affinity mask, quota 4 cores -> 4 usable"
    )


def test_thread_environment_keeps_the_users_settings() -> None:
    assert thread_environment({}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert thread_environment({"OMP_WAIT_POLICY": "active"}) == {}
    assert thread_environment({"GOMP_SPINCOUNT": "10000"}) == {}
    assert thread_environment({"OMP_NUM_THREADS": "4"}, threads=2) == {
        "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "2",
    }


def test_the_machine_is_busy_when_other_tasks_hold_half_its_cores() -> None:
    samples = sample_others(samples=3, interval_s=0.0)
    assert len(samples) == 3 and all(s is None or s >= 0 for s in samples)
    if Path("/proc/loadavg").exists():  # Linux: the real file parses
        assert all(isinstance(s, int) for s in samples)
    assert others_running("1.00 0.50 0.25 1/90 4242") == 0 and others_running("garbled") is None
    assert not machine_busy([0, 0, 0], usable=2) and machine_busy([1, 1, 0], usable=2)
    assert not machine_busy([7, 6, 7], usable=16) and machine_busy([8, 9, 8], usable=16)
    assert machine_busy([], usable=4)  # cannot tell: the safe side
    assert thread_environment({}, busy=False) == {} and thread_environment({}, busy=True) == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_thread_settings_apply_and_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    with thread_settings(3, busy=True) as n:
        assert n == torch.get_num_threads() == 3
        assert os.environ["OMP_NUM_THREADS"] == "3" and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert torch.get_num_threads() == before
    assert os.environ["OMP_NUM_THREADS"] == "1" and "OMP_WAIT_POLICY" not in os.environ
    with thread_settings(3, busy=False):  # an idle machine: GNU OpenMP's own spinning is kept
        assert os.environ["OMP_NUM_THREADS"] == "3" and "OMP_WAIT_POLICY" not in os.environ
    with thread_settings(None) as n:  # the user's OMP_NUM_THREADS: torch's count is kept
        assert n == before


def test_parsing_a_computing_command_does_not_import_torch() -> None:
    """The edge sets OMP_WAIT_POLICY before torch loads GNU OpenMP: parsing must not load it."""
    code = (
        "import sys; from landscape.cli import build_parser; "
        "a = build_parser().parse_args(['surface', '--ckpt', 'x.pt', '--threads', '2']); "
        "print(a.threads, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "False"]


@pytest.mark.e2e
def test_threads_option_reaches_the_run_record(tiny_ckpt: Path, tmp_path: Path) -> None:
    """`landscape surface --threads 1` in a subprocess: the run record says 1 thread."""
    out = tmp_path / "s.h5"
    env = cli_env()
    env.pop("OMP_NUM_THREADS")
    env.pop("OMP_WAIT_POLICY", None)
    proc = subprocess.run(
        [landscape_command(), "surface", "--ckpt", str(tiny_ckpt), "--x=-1:1:3", "--max-samples", "64",
         "--splits", "train", "--out", str(out), "--quiet", "--threads", "1"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out, "r") as f:
        runs = json.loads(f.attrs["runs"])
    assert runs[-1]["threads"] == 1


def test_info_names_the_usable_cores() -> None:
    from landscape.jobs.info import describe_machine
    from landscape.system.threads import machine_cpus

    info = json.loads(describe_machine(as_json=True))
    assert info["cores"] == machine_cpus().describe() and info["cores"].endswith("usable")
