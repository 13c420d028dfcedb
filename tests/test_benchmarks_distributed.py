"""benchmarks/distributed_memory.py without launching: its tensor accounting and its report."""

import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "distributed_memory.py"


def load():
    spec = importlib.util.spec_from_file_location("distributed_memory", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_live_tensor_bytes_counts_each_storage_once():
    bench = load()
    before = bench.live_tensor_bytes()
    block = torch.zeros(1 << 20, dtype=torch.float32)  # 4 MiB
    views = [block[:10], block.view(1024, 1024)]  # the same storage, counted once
    grown = bench.live_tensor_bytes() - before
    assert 4 << 20 <= grown < (4 << 20) + (1 << 20), grown
    del block, views


def test_the_report_gives_each_rank_and_its_ratio_to_ddp(tmp_path, capsys):
    bench = load()
    report = {"model": "m", "steps": 2, "max_length": 64,
              "environment": {"date": "d", "cpu": "c", "cpu_cores": 2, "mem_total_gib": 1, "torch": "t"},
              "engines": {"ddp": [{"state_mib": 100.0, "peak_rss_mib": 900}] * 2,
                          "fsdp2": [{"state_mib": 50.0, "peak_rss_mib": 800}] * 2}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    bench.main(["--render", str(path), "--markdown", str(tmp_path / "r.md")])
    text = (tmp_path / "r.md").read_text()
    assert "| fsdp2 | 1 | 50.0 | 0.50 | 800 |" in text and "| ddp | 0 | 100.0 | 1.00 | 900 |" in text
