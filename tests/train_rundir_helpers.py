"""Helpers shared by test_train_rundir.py and test_train_trainer.py."""

from __future__ import annotations

from deft.train import load_config

QUIET = dict(log=lambda *_: None)


def cfg_for(model_dir, data, out, **kw):
    base = dict(model=str(model_dir), data=str(data), output_dir=str(out), max_length=256, lr=1e-3,
                progress=False, seed=7, batch_size=2)
    base.update(kw)
    return load_config(None, base)
