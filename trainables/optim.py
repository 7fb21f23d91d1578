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


def parameter_groups(
    model: torch.nn.Module, weight_decay: float, params: dict[str, torch.Tensor] | None = None
) -> list[dict[str, Any]]:
    """The model's parameters as optimizer groups: the class centres of a distance head undecayed.

    Weight decay pulls every parameter towards 0, which for a centre w_k means towards the origin of
    the embedding space, not towards a simpler function: the reference code's distance layer
    (``DisMax``) has no regularizer either. Everything else (the body, a dense head) is decayed.

    ``params``: tensors to group in the places of the model's own parameters, by name (a pack's
    member's slices of the stacked ones, ``trainables.pack``): the same groups in the same order.
    """
    centres = {f"{name}.{p}" if name else p for name, m in model.named_modules() if isinstance(m, DistanceHead)
               for p, _ in m.named_parameters()}  # fmt: skip
    named = [(name, params[name] if params is not None else p) for name, p in model.named_parameters()]
    groups = [{"params": [p for name, p in named if name not in centres], "weight_decay": weight_decay}]
    if centres:
        groups.append({"params": [p for name, p in named if name in centres], "weight_decay": 0.0})
    return groups


def build_optimizer(
    model: torch.nn.Module, config: dict[str, Any], params: dict[str, torch.Tensor] | None = None, fused: bool = False
) -> torch.optim.Optimizer:
    """``sgd``, ``sgd_nesterov`` or ``adam`` over the model's :func:`parameter_groups`, from flat config keys.

    ``l2`` is the paper's L2 factor on the loss, l2·Σw²; its gradient 2·l2·w is ``weight_decay=2·l2``,
    applied to every parameter except the class centres of a distance head. ``params`` and ``fused``
    (torch's one-kernel update): for a pack's members (``trainables.pack``).
    """
    name, lr = config["optimizer"], float(config["lr"])
    groups = parameter_groups(model, 2.0 * float(setting(config, "l2")), params)
    kernel = {"fused": True} if fused else {}
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(config.get("momentum", 0.0)), **kernel)
    if name == "sgd_nesterov":
        return torch.optim.SGD(groups, lr=lr, momentum=float(config.get("momentum", 0.9)), nesterov=True, **kernel)
    if name == "adam":
        betas = (float(setting(config, "adam_beta1")), float(setting(config, "adam_beta2")))
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=float(setting(config, "adam_eps")), **kernel)
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
