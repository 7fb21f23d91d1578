"""A pack: K trials of one loss and architecture trained as one vectorised model in one process.

Small models leave the hardware idle: the digits MLP's step is mostly Python and kernel launches,
whatever its size. A pack stacks the K members' parameters (``torch.func.stack_module_state``) and
runs one ``functional_call`` of the shared architecture under ``vmap``: each layer is one batched
kernel over the members (a ``bmm`` for the linear layers; convolutions and batch norm become grouped
ones, as HFTA's fused models do by hand), so the per-step overhead is paid once for K trials.

Each member is still its own trial, step for step what :func:`trainables.loop.fit_epoch` does for
it alone:

- its own initial weights (the trial's ``seed``), data order and augmentation stream (generators
  seeded as ``fit_epoch`` seeds them), batch-norm statistics (stacked buffers);
- its own hyperparameters: :class:`PackOptimizer` is ``torch.optim.SGD``/``Adam`` with each
  hyperparameter a per-member column (learning rate and its schedule, betas, eps, momentum, weight
  decay), the same arithmetic in the same order;
- its own divergence: members never mix (no operation sums over the member axis except the total
  loss, whose gradient is 1 for each member's own loss), so a member that goes non-finite harms
  nobody; :meth:`Pack.keep` drops it at the epoch's end and the others go on.

A member's state comes out as an ordinary :class:`~trainables.models.Classifier` and an ordinary
optimizer (:meth:`Pack.member`), so its checkpoint is a trial checkpoint like any other.

What a pack needs of its members: the same model and loss (one architecture), the same
``batch_size`` and ``steps_per_epoch`` (one batch shape), the same optimizer kind, in-memory data,
one worker per trial and no micro-batches (:func:`pack_problem` says which differs).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.func import functional_call, stack_module_state, vmap

from trainables.data import Split
from trainables.loop import batch_order
from trainables.losses import DistanceHead, Loss
from trainables.models import Classifier
from trainables.optim import build_optimizer, lr_factor
from trainables.trial_config import setting

# Config keys every member of a pack must share: they fix the architecture, the batch shape and the
# optimizer's kind. Everything else (the sampled hyperparameters, the seed) may differ.
SHARED_KEYS = ("dataset", "model", "loss", "hidden", "depth", "width", "widen", "batch_size", "steps_per_epoch",
               "optimizer", "epochs")  # fmt: skip


def pack_problem(configs: Sequence[dict[str, Any]]) -> str | None:
    """Why these trial configs cannot train as one pack, or None if they can."""
    first = configs[0]
    for key in SHARED_KEYS:
        values = {repr(c.get(key)) for c in configs}
        if len(values) > 1:
            return f"the trials differ in {key} ({', '.join(sorted(values))}); a pack shares it"
    for config in configs:
        if int(setting(config, "workers_per_trial")) > 1:
            return "a pack trains in one worker: workers_per_trial must be 1"
        if config.get("micro_batch_size") and int(config["micro_batch_size"]) < int(first["batch_size"]):
            return "a pack takes whole batches: micro_batch_size must be unset"
    return None


class Pack:
    """K classifiers of one architecture, stacked, with their optimizers: one vectorised model.

    Args:
        models: the members' classifiers, built as their trials build them (same architecture).
        configs: each member's flat trial config (its hyperparameters and seed).
        optimizer_states: each member's ``torch.optim`` state dict to resume from (None: a fresh one).
    """

    def __init__(
        self,
        models: Sequence[Classifier],
        configs: Sequence[dict[str, Any]],
        optimizer_states: Sequence[dict[str, Any] | None] | None = None,
    ):
        problem = pack_problem(configs)
        if problem:
            raise ValueError(problem)
        self.configs = list(configs)
        self.template = copy.deepcopy(models[0]).to("meta")  # the shared architecture, without storage
        params, buffers = stack_module_state(list(models))  # name -> (K, ...)
        self.params = params
        self.buffers = buffers
        self.optimizer = PackOptimizer(self.template, params, configs)
        if optimizer_states is not None:
            self.optimizer.load_members(models, optimizer_states)

    def __len__(self) -> int:
        return len(self.configs)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's logits on its own inputs: x (K, B, ...) -> (K, B, C)."""

        def one(params, buffers, inputs):
            return functional_call(self.template, (params, buffers), (inputs,))

        return vmap(one)(self.params, self.buffers, x)

    def train(self, mode: bool = True) -> None:
        """Training or evaluation mode (batch norm's batch statistics or running ones)."""
        self.template.train(mode)

    def member(self, k: int) -> tuple[Classifier, torch.optim.Optimizer]:
        """Member ``k`` as an ordinary classifier and optimizer, with copies of its state: what its
        trial's checkpoint and validation use."""
        model = copy.deepcopy(self.template).to_empty(device=self.device)
        model.load_state_dict({name: t[k] for name, t in (self.params | self.buffers).items()})
        optimizer = build_optimizer(model, self.configs[k])
        self.optimizer.fill_member(k, model, optimizer)
        model.train(self.template.training)
        return model, optimizer

    def keep(self, members: Sequence[int]) -> None:
        """Go on with only ``members`` (indices into the current pack), in that order: the others
        (diverged, stopped) no longer cost anything."""
        index = torch.tensor(list(members), dtype=torch.long)
        self.configs = [self.configs[k] for k in members]
        self.params = {name: t.detach()[index].requires_grad_() for name, t in self.params.items()}
        self.buffers = {name: t[index] for name, t in self.buffers.items()}
        self.optimizer.keep(index, self.params, self.configs)

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device


class PackOptimizer:
    """``torch.optim.SGD`` (with momentum, Nesterov or not) or ``Adam``, for all members at once.

    Each hyperparameter is a column (K, 1, ..., 1) broadcast over a stacked parameter (K, ...), and
    each update is ``torch.optim``'s single-tensor update written with those columns, in the same
    order, so a member's step is the step its own optimizer would take (to float rounding of the
    batched kernels upstream). As :func:`trainables.optim.parameter_groups` does, the class centres
    of a distance head are not decayed.
    """

    def __init__(self, template: Classifier, params: dict[str, torch.Tensor], configs: Sequence[dict[str, Any]]):
        self.kind = configs[0]["optimizer"]
        if self.kind not in ("sgd", "sgd_nesterov", "adam"):
            raise ValueError(f"unknown optimizer {self.kind!r}; choose from: sgd, sgd_nesterov, adam")
        self.undecayed = {f"{name}.{p}" for name, m in template.named_modules() if isinstance(m, DistanceHead)
                          for p, _ in m.named_parameters()}  # fmt: skip
        self.params = params
        self.state: dict[str, dict[str, torch.Tensor]] = {name: {} for name in params}
        self.step_count = torch.zeros(len(configs), dtype=torch.float64)  # each member's steps taken
        self._set_members(configs, self._column(configs, lambda c: float(c["lr"])))

    @staticmethod
    def _column(configs: Sequence[dict[str, Any]], value: Callable[[dict[str, Any]], float]) -> torch.Tensor:
        """One float64 value per member, (K,)."""
        return torch.tensor([value(c) for c in configs], dtype=torch.float64)

    def _set_members(self, configs: Sequence[dict[str, Any]], lr: torch.Tensor) -> None:
        """Each member's hyperparameters as (K,) float64 columns, read once (not per step)."""
        self.configs = list(configs)
        self.lr = lr
        self.decay = self._column(configs, lambda c: 2.0 * float(setting(c, "l2")))
        default = 0.9 if self.kind == "sgd_nesterov" else 0.0
        self.momentum = self._column(configs, lambda c: float(c.get("momentum", default)))
        self.beta1 = self._column(configs, lambda c: float(setting(c, "adam_beta1")))
        self.beta2 = self._column(configs, lambda c: float(setting(c, "adam_beta2")))
        self.eps = self._column(configs, lambda c: float(setting(c, "adam_eps")))
        self.hyperparameters = {"decay": self.decay, "momentum": self.momentum, "beta2": self.beta2, "eps": self.eps,
                                "one_minus_beta1": 1 - self.beta1, "one_minus_beta2": 1 - self.beta2}  # fmt: skip

    def set_epoch_lr(self, epoch: int) -> None:
        """Each member's learning rate for a 0-based epoch (its own schedule, as ``set_epoch_lr``)."""
        self.lr = self._column(self.configs, lambda c: float(c["lr"]) * lr_factor(epoch, c))

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One step of every member, each with its own hyperparameters."""
        self.step_count += 1
        per_step = {}
        if self.kind == "adam":  # as torch.optim.Adam: the bias corrections in float64, used as float32
            per_step["step_size"] = self.lr / (1 - self.beta1**self.step_count)
            per_step["correction2_sqrt"] = (1 - self.beta2**self.step_count).sqrt()
        else:
            per_step["lr"] = self.lr
        columns: dict[int, dict[str, torch.Tensor]] = {}  # parameter rank -> name -> (K, 1, ..., 1)
        for name, param in self.params.items():
            if param.grad is None:
                continue
            if param.dim() not in columns:
                columns[param.dim()] = {key: _column_of(values, param) for key, values in
                                        (self.hyperparameters | per_step).items()}  # fmt: skip
            c = columns[param.dim()]
            grad = param.grad if name in self.undecayed else param.grad + c["decay"] * param
            state = self.state[name]
            if self.kind == "adam":
                if not state:
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                # torch.optim.Adam's single-tensor update, in its order of operations (in place where it allocates)
                exp_avg.lerp_(grad, c["one_minus_beta1"])
                exp_avg_sq.mul_(c["beta2"]).add_((c["one_minus_beta2"] * grad).mul_(grad))  # addcmul_: (v·g)·g
                denom = exp_avg_sq.sqrt().div_(c["correction2_sqrt"]).add_(c["eps"])
                param.sub_((c["step_size"] * exp_avg).div_(denom))  # addcdiv_: (−step·m)/denom
            else:
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.clone()
                else:
                    state["momentum_buffer"].mul_(c["momentum"]).add_(grad)
                buffer = state["momentum_buffer"]
                update = grad + c["momentum"] * buffer if self.kind == "sgd_nesterov" else buffer
                param.sub_(c["lr"] * update)

    def keep(self, index: torch.Tensor, params: dict[str, torch.Tensor], configs: Sequence[dict[str, Any]]) -> None:
        """Only the members at ``index`` (see :meth:`Pack.keep`)."""
        self.params = params
        self.state = {name: {k: t[index] for k, t in state.items()} for name, state in self.state.items()}
        self.step_count = self.step_count[index]
        self._set_members(configs, self.lr[index])

    # The bridge to torch.optim's own state, so a member's checkpoint is an ordinary trial's.

    def fill_member(self, k: int, model: Classifier, optimizer: torch.optim.Optimizer) -> None:
        """Put member ``k``'s state into ``optimizer`` (a ``torch.optim`` one over ``model``)."""
        named = dict(model.named_parameters())
        for name, state in self.state.items():
            if not state:
                continue
            member = {key: t[k].clone() for key, t in state.items()}
            if self.kind == "adam":
                member["step"] = torch.tensor(float(self.step_count[k]))
            optimizer.state[named[name]] = member
        for group in optimizer.param_groups:
            group["lr"] = float(self.lr[k])

    def load_members(self, models: Sequence[Classifier], states: Sequence[dict[str, Any] | None]) -> None:
        """Stack each member's ``torch.optim`` state dict (None: a member that starts fresh, only
        possible when all do)."""
        if all(s is None for s in states):
            return
        if any(s is None for s in states):
            raise ValueError("a pack resumes all its members or none")
        per_member = []
        for model, config, saved in zip(models, self.configs, states):
            optimizer = build_optimizer(model, config)
            optimizer.load_state_dict(saved)
            by_param = {id(p): name for name, p in model.named_parameters()}
            per_member.append({by_param[id(p)]: s for p, s in optimizer.state.items()})
        for name in self.params:
            keys = [k for k in per_member[0].get(name, {}) if k != "step"]
            self.state[name] = {key: torch.stack([m[name][key] for m in per_member]) for key in keys}
        steps = [next((float(s["step"]) for s in m.values() if "step" in s), 0.0) for m in per_member]
        self.step_count = torch.tensor(steps, dtype=torch.float64)


def _column_of(values: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """(K,) float64 -> (K, 1, ..., 1) in ``param``'s dtype and device, to broadcast over a stacked parameter."""
    return values.to(param.device, param.dtype).view(-1, *([1] * (param.dim() - 1)))


def fit_pack_epoch(
    pack: Pack,
    loss: Loss,
    train: Split,
    epoch: int,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> list[tuple[float, float]]:
    """Train every member one epoch (0-based index ``epoch``); returns each member's (mean training
    loss, training accuracy), in pack order. A member's batches, augmentation and step are those
    :func:`trainables.loop.fit_epoch` gives its trial alone; a non-finite loss comes back as such."""
    configs = pack.configs
    device = pack.device
    seeds = [int(c["seed"]) * 100_003 + epoch for c in configs]  # fit_epoch's per-epoch seed
    batch_size = int(configs[0]["batch_size"])
    orders = [batch_order(len(train), batch_size, configs[0].get("steps_per_epoch"), torch.Generator().manual_seed(s))
              for s in seeds]  # fmt: skip
    augment_generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    pack.train()
    members = len(pack)
    total_loss = torch.zeros(members, device=device)
    correct = torch.zeros(members, dtype=torch.long, device=device)
    on = train.x.device
    for batches in zip(*orders):
        index = torch.stack(batches).to(on)  # (K, B)
        x, y = train.x[index].to(device), train.y[index].to(device)  # (K, B, ...), (K, B)
        if augment is not None:
            x = torch.stack([augment(x[k], augment_generators[k]) for k in range(members)])
        pack.optimizer.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = pack.logits(x)  # (K, B, C)
        losses = torch.stack([loss.training_loss(logits[k].float(), y[k]) for k in range(members)])  # (K,)
        losses.sum().backward()  # each member's gradient is its own loss's: the members never mix
        pack.optimizer.step()
        total_loss += losses.detach()
        correct += (logits.detach().argmax(dim=2) == y).sum(dim=1)
    steps = len(orders[0])
    examples = sum(len(b) for b in orders[0])
    return [(float(total_loss[k]) / steps, float(correct[k]) / examples) for k in range(members)]


def diverged(results: Sequence[tuple[float, float]]) -> list[int]:
    """The members whose training loss went non-finite (indices into the pack)."""
    return [k for k, (train_loss, _) in enumerate(results) if not math.isfinite(train_loss)]
