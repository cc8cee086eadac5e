"""Training, evaluation and constraint-keeping fine-tuning on any device and any
``torch.utils.data`` input; safetensors checkpoints."""

from compactnn.train.checkpoint import checkpoint_metadata, load_checkpoint, save_checkpoint
from compactnn.train.data import input_sample
from compactnn.train.device import autocast, best_device, device_of, on_device
from compactnn.train.loops import evaluate, fit, predict, task_of

__all__ = ["fit", "evaluate", "predict", "task_of", "save_checkpoint", "load_checkpoint",
           "checkpoint_metadata", "input_sample", "autocast", "best_device", "device_of",
           "on_device"]
