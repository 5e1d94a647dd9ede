"""The shared training loop: ``train(model, loss_fn, data, TrainConfig(...), validate=...)``."""

from liquid_lvm.training.checkpoint import load_checkpoint, save_checkpoint
from liquid_lvm.training.config import TrainConfig
from liquid_lvm.training.distributed import DistInfo, init_distributed
from liquid_lvm.training.loop import TrainResult, count_parameters, param_groups, seed_everything, train
from liquid_lvm.training.schedule import warmup_cosine

__all__ = ["DistInfo", "TrainConfig", "TrainResult", "count_parameters", "init_distributed", "load_checkpoint",
           "param_groups", "save_checkpoint", "seed_everything", "train", "warmup_cosine"]
