"""deft compare --protocol paper: the reference's presets in the dry-run plan; the paper's tables as data."""

import glob

import pytest

from deft.cli.main import main
from deft.recipes.paper import paper_settings
from deft.recipes.paper_tables import TABLES, paper_value


def test_dry_run_prints_the_reference_hyper_parameters(capsys):
    args = ["compare", "--protocol", "paper", "--regime", "figfont", "--model-key", "qwen-2.5-1.5b",
            "--objectives", "original,p,Cayley_Trans,DEFT", "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for text in ("Qwen/Qwen2.5-1.5B", "global_batch_size 256", "epochs 1", "lr 5e-05", "lr_scheduler cosine",
                 "max_length 800", "weight_decay 1e-05", "max_new_tokens 5"):
        assert text in out, text
    # the published numbers of the same cell stand beside each objective (Table 3, Qwen2.5-1.5B)
    assert "DEFT (deft)" in out and "JW 33.66 (Table 3" in out and "JW 35.32" in out  # DEFT and Base rows
    math = paper_settings("math", "llama-3.1-8b")
    assert math["train"]["lr"] == 2e-5 and math["train"]["max_length"] == 3072 and math["train"]["weight_decay"] == 0
    assert math["eval"]["k"] == 16 and math["eval"]["prompt_type"] == "llama-base-boxed-with-bos"
    assert paper_settings("medical", "qwen-2.5-1.5b")["eval"]["max_new_tokens"] == 8000
    assert paper_settings("math", "qwen-2.5-7b")["note"]  # no reference preset for that pair


@pytest.mark.parametrize("args,match", [
    (["--regime", "figfont"], "--model-key"),
    (["--regime", "figfont", "--model-key", "gpt-9"], "model-key must be one of"),
])
def test_paper_protocol_errors(args, match, capsys):
    assert main(["compare", "--protocol", "paper", "--dry-run", *args]) == 2
    assert match in capsys.readouterr().err


def test_transcribed_cells_match_the_paper_text():
    text = open(glob.glob("/work/shared/seeds/002_*.txt")[0]).read() if glob.glob("/work/shared/seeds/002_*.txt") else ""
    assert len(TABLES) == 4 * 6 * 6 + 4 * 6 * 11 + 4 * 2 * 6
    cell = paper_value("math", "qwen-2.5-math-1.5b", "p", "Avg")
    assert (cell["table"], cell["row"], cell["value"]) == (1, "Qwen2.5-Math-1.5B / -p", 32.14)
    assert paper_value("medical", "llama-3.1-8b", "deft", "Avg")["value"] == 52.00
    assert paper_value("medical", "llama-3.2-3b", "Cayley_Trans", "GPQA")["value"] == 32.56
    assert paper_value("figfont", "qwen-2.5-7b", "eaft", "EM")["value"] == 47.66
    assert paper_value("figfont", "llama-3.2-3b", "DEFT", "JW")["value"] == 60.22
    assert paper_value("figfont", "llama-3.2-3b", "nll", "JW")["value"] == 40.37
    if text:  # the row as printed in the paper
        assert "Qwen2.5-Math-1.5B\tBase\t30.71\t8.81\t14.88\t2.49\t17.97\t14.97" in text
        assert "DEFT\t54.77\t60.57\t76.00\t54.07\t44.87\t59.70\t50.97\t47.72\t14.08\t57.21\t52.00" in text
