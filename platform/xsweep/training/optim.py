"""Optimizers and learning-rate schedules of a trial's `train` section.

The learning-rate schedule is stepped once per epoch; it is not the trial scheduler that stops
trials early (search/schedulers.py).
"""

import torch

# The paper's ImageNet schedule (Chollet 2017, sec. 4): lr x0.94 every 2 epochs.
PAPER_DECAY, PAPER_EVERY = 0.94, 2
# RMSprop's eps is added to sqrt(mean square). Torch's 1e-8 makes the first steps, and any
# weight whose gradients are ~0 (dead channels after a ReLU), move by ~lr per step, which
# diverges at the paper's lr scale; TF-Inception used 1.0, which turns RMSprop into plain
# momentum SGD for small gradients. 1e-3 (TF-ported EfficientNet/timm) keeps it adaptive but bounded.
RMSPROP_EPS = 1e-3
# RMSprop's moving average of squared gradients: 0.9, as in the Inception/Xception TF setups.
RMSPROP_ALPHA = 0.9


def build_optimizer(model, train):
    name, lr, wd = train["optimizer"], train["lr"], train["weight_decay"]
    params = model.parameters()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=train["momentum"], weight_decay=wd, nesterov=False)
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=lr, alpha=RMSPROP_ALPHA, eps=RMSPROP_EPS, momentum=train["momentum"], weight_decay=wd
        )
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise ValueError(f"train.optimizer: unknown optimizer {name!r} (use sgd, rmsprop or adamw)")


def build_lr_schedule(optimizer, train):
    """A scheduler stepped once per epoch."""
    name = train["lr_schedule"]
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    if name == "paper":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=PAPER_EVERY, gamma=PAPER_DECAY)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=train["epochs"])
    raise ValueError(f"train.lr_schedule: unknown schedule {name!r} (use constant, paper or cosine)")
