"""The optimizer and its learning-rate schedule, from a trial's flat config.

``build_optimizer`` makes SGD, SGD with Nesterov momentum or Adam (the paper's Appendix E choices)
over :func:`parameter_groups`; ``set_epoch_lr`` sets each epoch's learning rate from
:func:`lr_factor`, a pure function of the epoch, so a resumed trial needs no scheduler state.
"""

from __future__ import annotations

from typing import Any

import torch

from trainables.losses import DistanceHead
from trainables.trial_config import OPTIMIZERS, setting


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The model's parameters as optimizer groups: the class centres of a distance head undecayed.

    Weight decay pulls every parameter towards 0, which for a centre w_k means towards the origin of
    the embedding space, not towards a simpler function: the reference code's distance layer
    (``DisMax``) has no regularizer either. Everything else (the body, a dense head) is decayed.
    """
    centres = {id(p) for m in model.modules() if isinstance(m, DistanceHead) for p in m.parameters()}
    decayed = [p for p in model.parameters() if id(p) not in centres]
    undecayed = [p for p in model.parameters() if id(p) in centres]
    groups = [{"params": decayed, "weight_decay": weight_decay}]
    if undecayed:
        groups.append({"params": undecayed, "weight_decay": 0.0})
    return groups


def build_optimizer(model: torch.nn.Module, config: dict[str, Any]) -> torch.optim.Optimizer:
    """``sgd``, ``sgd_nesterov`` or ``adam`` over the model's :func:`parameter_groups`, from flat config keys.

    ``l2`` is the paper's L2 factor on the loss, l2·Σw²; its gradient 2·l2·w is ``weight_decay=2·l2``,
    applied to every parameter except the class centres of a distance head.
    """
    name, lr = config["optimizer"], float(config["lr"])
    params = parameter_groups(model, 2.0 * float(setting(config, "l2")))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(config.get("momentum", 0.0)))
    if name == "sgd_nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=float(config.get("momentum", 0.9)), nesterov=True)
    if name == "adam":
        betas = (float(setting(config, "adam_beta1")), float(setting(config, "adam_beta2")))
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=float(setting(config, "adam_eps")))
    raise ValueError(f"unknown optimizer {name!r}; choose from: {', '.join(OPTIMIZERS)}")


def lr_factor(epoch: int, config: dict[str, Any]) -> float:
    """Learning-rate multiplier for a 0-based epoch: linear warm-up, then ×gamma at each milestone."""
    warmup = int(setting(config, "warmup_epochs"))
    if epoch < warmup:
        return (epoch + 1) / warmup
    passed = sum(epoch >= m for m in setting(config, "lr_milestones"))
    return float(setting(config, "lr_gamma")) ** passed


def set_epoch_lr(optimizer: torch.optim.Optimizer, config: dict[str, Any], epoch: int) -> None:
    """Set the learning rate of a 0-based epoch. The schedule is a pure function of the epoch, so a
    resumed trial needs no scheduler state."""
    for group in optimizer.param_groups:
        group["lr"] = float(config["lr"]) * lr_factor(epoch, config)
