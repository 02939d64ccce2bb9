"""Two processes under torchrun (gloo, CPU) train exactly as one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detseg.engine.checkpoint import load_checkpoint
from detseg.engine.logging import read_csv

SCRIPT = Path(__file__).with_name("ddp_toy_train.py")
sys.path.insert(0, str(SCRIPT.parent))
import ddp_toy_train  # noqa: E402


def _run(args: list[str], cwd: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_two_process_ddp_equals_one_process(tmp_path):
    ddp_toy_train.main(str(tmp_path / "one"))  # one process, in this one (saves a start-up)
    _run(
        [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "--monitor-interval",
            "0.1",
            str(SCRIPT),
            str(tmp_path / "two"),
        ],
        tmp_path,
    )
    one = read_csv(tmp_path / "one" / "steps.csv")
    two = read_csv(tmp_path / "two" / "steps.csv")
    assert len(one) == len(two) == 6  # 12 images, global batch 4, 2 epochs
    assert [float(r["loss"]) for r in two] == pytest.approx([float(r["loss"]) for r in one], rel=1e-5)
    assert float(one[-1]["loss"]) < float(one[0]["loss"])
    # Metrics over the whole validation set (5 images: 3 on rank 0, 2 on rank 1), summed across processes.
    r1 = json.loads((tmp_path / "one" / "result.json").read_text())
    r2 = json.loads((tmp_path / "two" / "result.json").read_text())
    assert (r1["world_size"], r2["world_size"]) == (1, 2)
    assert r2["last"] == pytest.approx(r1["last"], rel=1e-5)
    w1, w2 = (load_checkpoint(tmp_path / d / "last.pt")["model"] for d in ("one", "two"))
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-5, atol=1e-6)
    # Only rank 0 wrote: one log, no stray temporary files.
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )
