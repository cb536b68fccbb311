"""The bf16 benchmark: the engine's bf16 plan against its fp32 plan, and what the trial considers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from landscape.engine.planning import PRECISIONS, candidate_plans
from landscape.models import create_model
from landscape.system.cpu import cpu_info

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_bf16.py"


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_trial_considers_only_the_precision_asked_for(precision: str) -> None:
    net = create_model("resnet8").eval()
    plans = candidate_plans(net, torch.device("cpu"), 5000, precision=precision, sample=torch.randn(4, 3, 32, 32))
    assert len(plans) > 1
    assert {p.precision for p in plans} == {precision}


def test_the_benchmark_prints_the_ratio_and_what_the_cpu_has(tmp_path: Path) -> None:
    out = tmp_path / "bf16.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("bf16/fp32 speed: ")
    ratio = float(last.split(": ")[1].split("x")[0])
    assert ratio > 0
    assert ("no native bf16" in last) == (not cpu_info().native_bf16)
    r = json.loads(out.read_text())
    assert abs(ratio - r["bf16_over_fp32_speed"]) < 0.01
    assert abs(r["fp32_s_per_point"] / r["bf16_s_per_point"] - r["bf16_over_fp32_speed"]) < 1e-9
    assert 0 < r["bf16_max_rel_loss_error"] < 0.05  # bf16 differs from fp32, but not by much


def test_without_native_bf16_the_report_says_so() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    from bench_bf16 import report

    r = {"model": "resnet20", "images": 8, "points": 2, "repeats": 1, "threads": 2, "cpu": "x: AVX2",
         "native_bf16": False, "bf16_max_rel_loss_error": 1e-3, "bf16_over_fp32_speed": 0.1}
    for p, s in (("fp32", 0.1), ("bf16", 1.0)):
        r.update({f"{p}_s_per_point": s, f"{p}_batch_size": 64, f"{p}_warmup_s": s, f"{p}_rounds_s_per_point": [s]})
    assert report(r).splitlines()[-1].startswith("bf16/fp32 speed: 0.10x; this CPU has no native bf16")
    assert "bf16 native" in report({**r, "native_bf16": True}).splitlines()[-1]
