"""`scripts/gpu_check.py --device cpu --quick`: the GPU check's every code path on a CPU (tiny
models and data, the 2-rank MPI part under the venv's mpiexec). The JSON's structure, and every
candidate plan exact at fp32 against plain PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env, mpiexec_command

GPU_CHECK = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.mark.mpi
def test_gpu_check_quick_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", str(GPU_CHECK), "--device", "cpu", "--quick", "--json", str(out),
         "--mpiexec", mpiexec_command()],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["fp32_exact"] is True and report["machine"]["device"] == "cpu"
    assert [(c["model"], c["images"]) for c in report["cases"]] == [("resnet8", 32), ("densenet_bc40", 32)]
    for case in report["cases"]:
        plans = case["plans"]
        assert len(plans) >= 2 and plans[0]["rule"] and not any(p["rule"] for p in plans[1:])
        assert {p["meta"]["plan_strategy"] for p in plans} == {"sequential", "vmap"}  # both strategies timed
        for p in plans:
            assert set(p["errors"]) == {"fp32", "tf32", "bf16"}
            assert p["errors"]["fp32"] <= 1e-5, p
            assert p["errors"]["bf16"] < 0.05  # rounded, yet the same loss
            assert p["points_per_s"] > 0 and p["points_timed"] >= 1
            assert p["peak_memory_bytes"] is None  # device memory is measured on a GPU only
        assert case["paper_points_per_s"] > 0
        assert case["engine"]["plan"]["plan_device"] == "cpu" and case["engine"]["points_per_s"] > 0
    mpi = report["mpi"]
    assert mpi["ranks1"]["ranks"] == 1 and mpi["ranks2"]["ranks"] == 2
    assert mpi["speedup_2_vs_1"] > 0
    assert "fp32 exact: True" in proc.stdout and "2 ranks on one device" in proc.stdout
