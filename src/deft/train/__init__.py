"""Training: configuration, batches, token statistics and the HF-Trainer-based trainer."""

from .config import TrainConfig, load_config

__all__ = ["DeftTrainer", "TrainConfig", "load_config", "train"]


def __getattr__(name):  # the trainer imports torch and transformers: load it on first use
    if name == "DeftTrainer":
        from .trainer import DeftTrainer

        return DeftTrainer
    if name == "train":
        from .run import train

        return train
    raise AttributeError(f"module 'deft.train' has no attribute {name!r}")
