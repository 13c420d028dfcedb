"""Training: configuration, batches, token statistics and the HF-Trainer-based trainer."""

from .config import TrainConfig, load_config
from .trainer import DeftTrainer, train

__all__ = ["DeftTrainer", "TrainConfig", "load_config", "train"]
