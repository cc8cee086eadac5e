"""Training, evaluation and constraint-keeping fine-tuning; safetensors checkpoints."""

from compactnn.train.checkpoint import checkpoint_metadata, load_checkpoint, save_checkpoint
from compactnn.train.loops import evaluate, fit, predict, task_of

__all__ = ["fit", "evaluate", "predict", "task_of", "save_checkpoint", "load_checkpoint",
           "checkpoint_metadata"]
