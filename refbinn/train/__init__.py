"""Training: one step, the epoch loop, evaluation, checkpoints, schedules, golden traces."""
from .checkpoint import load_checkpoint, save_checkpoint
from .evaluate import evaluate
from .loop import Data, TrainConfig, fit, summarize
from .step import Pass, train_step
