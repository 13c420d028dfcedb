"""Helpers shared by test_train_collate.py and test_train_run.py."""

from __future__ import annotations

from deft.train import load_config


def cfg_for(tiny_model_dir, data, out, **kw):
    base = dict(model=str(tiny_model_dir), data=str(data), output_dir=str(out), max_length=256, lr=1e-3,
                progress=False, seed=7)
    base.update(kw)
    return load_config(None, base)
