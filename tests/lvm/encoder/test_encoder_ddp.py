"""DDP (torchrun, gloo, 2 CPU processes) trains the encoder to the same weights as one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from encoder_helpers import make_tiny_base

HERE = Path(__file__).parent


@pytest.mark.slow
@pytest.mark.torchrun
def test_two_rank_ddp_matches_single_process(tmp_path):
    if shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists():
        pytest.skip("torchrun is not installed")
    base = make_tiny_base(tmp_path / "base")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    worker = str(HERE / "encoder_ddp_worker.py")
    single, ddp = tmp_path / "single.pt", tmp_path / "ddp.pt"
    subprocess.run([sys.executable, worker, str(base), str(single)], check=True, env=env, timeout=600)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29613"]
    subprocess.run([*torchrun, worker, str(base), str(ddp)], check=True, env=env, timeout=600)
    a, b = torch.load(single), torch.load(ddp)
    assert (a["world_size"], b["world_size"]) == (1, 2) and a["steps"] == b["steps"] == 4
    assert a["params"].keys() == b["params"].keys() and any("layer.1" in k for k in a["params"])
    from liquid_lvm.encoder.model import init_head_weight

    assert not torch.allclose(a["params"]["st.3.linear.weight"], init_head_weight(32, 16, 0), atol=1e-3)  # trained
    for name in a["params"]:
        torch.testing.assert_close(a["params"][name], b["params"][name], atol=2e-5, rtol=1e-4, msg=name)
