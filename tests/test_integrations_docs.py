"""The README section "Use deft inside TRL / HF Trainer" runs.

Every ```python block is executed in one fresh interpreter, each block in its own namespace (so a
block that relies on a name from another fails), in a temporary working directory, and must
print or train what it says."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Use deft inside TRL / HF Trainer\n"


def section() -> str:
    """The README's integration section: from its heading to the next level-2 heading."""
    text = (ROOT / "README.md").read_text()
    return HEADING + text.split(HEADING, 1)[1].split("\n## ", 1)[0]

RUNNER = r"""
import json, sys, io, contextlib
blocks = json.load(open(sys.argv[1]))
for i, code in enumerate(blocks):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"block {i}", "exec"), {"__name__": "__main__"})
    print(json.dumps({"block": i, "stdout": out.getvalue()}), flush=True)
"""


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_section_blocks_run(tmp_path, smollm2_tokenizer, deft_cache_dir):
    blocks = python_blocks(section())
    assert len(blocks) == 4
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "run.py").write_text(RUNNER)
    env = dict(os.environ, DEFT_CACHE=str(deft_cache_dir), PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, "run.py", "blocks.json"], cwd=tmp_path, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"block"')]
    assert [r["block"] for r in results] == [0, 1, 2, 3]
    # block 0 prints the first step's loss and deft statistics logged through TRL
    first = re.findall(r"^loss ([0-9.]+), mean p ([0-9.e-]+), mean focus ([0-9.e-]+)$", results[0]["stdout"], re.M)
    assert len(first) == 1
    loss, mean_p, focus = map(float, first[0])
    # a random model over 49152 tokens: p and DEFT's focus sum_v P_v^2 are near 1/V, the loss near log V
    assert 0 < mean_p < 1e-3 and 0 < focus < 1e-3 and 9 < loss < 12
    # the hand-written loop prints two steps with finite losses and mean p in (0, 1)
    steps = re.findall(r"step (\d): loss ([0-9.]+), mean p ([0-9.]+)", results[3]["stdout"])
    assert [s[0] for s in steps] == ["0", "1"] and all(0 < float(s[2]) < 1 for s in steps)
    for name in ("deft-trl", "deft-hf", "deft-hf-fused"):
        assert (tmp_path / "runs" / name).is_dir()
