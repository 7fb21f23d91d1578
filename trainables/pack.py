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
- its own hyperparameters: :class:`PackOptimizer` gives each member the ``torch.optim`` optimizer
  its trial builds (kind, learning rate and schedule, betas, eps, momentum, weight decay, groups),
  over views of its slices of the stacked parameters, with torch's fused kernels;
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
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.func import functional_call, stack_module_state, vmap

from trainables.data import Split, input_batches
from trainables.loop import EVAL_BATCH_SIZE, batch_order
from trainables.losses import Loss
from trainables.models import Classifier
from trainables.optim import build_optimizer, set_epoch_lr
from trainables.trial_config import setting

# Config keys every member of a pack must share: they fix the architecture, the batch shape and the
# optimizer's kind, and what is validated. Everything else (the sampled hyperparameters, the seed) may differ.
SHARED_KEYS = ("dataset", "model", "loss", "hidden", "depth", "width", "widen", "batch_size", "steps_per_epoch",
               "optimizer", "epochs", "val_examples")  # fmt: skip


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
        self.template = copy.deepcopy(models[0]).to("meta")  # the shared architecture, without storage
        params, buffers = stack_module_state(list(models))  # name -> (K, ...)
        self.params = params
        self.buffers = buffers
        self.optimizer = PackOptimizer(self.template, params, configs)
        if optimizer_states is not None:
            self.optimizer.load_members(optimizer_states)

    @property
    def configs(self) -> list[dict[str, Any]]:
        """Each member's trial config, in pack order."""
        return self.optimizer.configs

    def __len__(self) -> int:
        return len(self.configs)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's logits on its own inputs: x (K, B, ...) -> (K, B, C)."""

        def one(params, buffers, inputs):
            return functional_call(self.template, (params, buffers), (inputs,))

        return vmap(one)(self.params, self.buffers, x)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor, loss: Loss) -> torch.Tensor:
        """Every member's evaluation probabilities on the same inputs x (N, ...) -> (K, N, C), float64,
        in evaluation mode (batch norm's running statistics), as ``predict_probabilities`` gives each."""
        self.train(False)

        def one(params, buffers, inputs):
            return loss.probabilities(functional_call(self.template, (params, buffers), (inputs,)))

        chunks = [vmap(one, in_dims=(0, 0, None))(self.params, self.buffers, chunk.to(self.device))
                  for chunk in input_batches(x, EVAL_BATCH_SIZE)]  # fmt: skip
        return torch.cat(chunks, dim=1).double()

    def train(self, mode: bool = True) -> None:
        """Training or evaluation mode (batch norm's batch statistics or running ones)."""
        self.template.train(mode)

    def member(self, k: int) -> tuple[Classifier, torch.optim.Optimizer]:
        """Member ``k`` as an ordinary classifier and optimizer, with copies of its state: what its
        trial's checkpoint and validation use."""
        model = copy.deepcopy(self.template).to_empty(device=self.device)
        model.load_state_dict({name: t[k] for name, t in (self.params | self.buffers).items()})
        optimizer = build_optimizer(model, self.configs[k])
        optimizer.load_state_dict(self.optimizer.state_dict(k))
        for group in optimizer.param_groups:  # the fused kernel is the pack's choice, not the trial's
            group["fused"] = None
        model.train(self.template.training)
        return model, optimizer

    def keep(self, members: Sequence[int]) -> None:
        """Go on with only ``members`` (indices into the current pack), in that order: the others
        (diverged, stopped) no longer cost anything."""
        index = torch.tensor(list(members), dtype=torch.long)
        self.params = {name: t.detach()[index].requires_grad_() for name, t in self.params.items()}
        self.buffers = {name: t[index] for name, t in self.buffers.items()}
        self.optimizer.keep(index, self.params)

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device


class PackOptimizer:
    """Each member's own ``torch.optim`` optimizer, over views of its slices of the stacked parameters.

    A member's optimizer is the one its trial builds alone (:func:`trainables.optim.build_optimizer`:
    its optimizer kind, hyperparameters, groups with a distance head's centres undecayed, its
    learning-rate schedule), with torch's fused kernel (one pass over each tensor, on the CPU and
    CUDA) so that K small updates cost little more than one. Its parameters are views of the stacked
    tensors, so each update lands in the pack; its state is an ordinary ``torch.optim`` state dict.
    """

    def __init__(self, template: Classifier, params: dict[str, torch.Tensor], configs: Sequence[dict[str, Any]]):
        self.template = template
        self.configs = list(configs)
        self._build(params)

    def _build(self, params: dict[str, torch.Tensor]) -> None:
        self.params = params
        # (K members) name -> the member's slice, a leaf that shares the stacked tensor's storage
        self.views = [{name: t.detach()[k] for name, t in params.items()} for k in range(len(self.configs))]
        self.optimizers = [build_optimizer(self.template, config, views, fused=True)
                           for config, views in zip(self.configs, self.views)]  # fmt: skip

    def set_epoch_lr(self, epoch: int) -> None:
        """Each member's learning rate for a 0-based epoch, by its own schedule."""
        for optimizer, config in zip(self.optimizers, self.configs):
            set_epoch_lr(optimizer, config, epoch)

    @property
    def lr(self) -> list[float]:
        """Each member's learning rate now."""
        return [optimizer.param_groups[0]["lr"] for optimizer in self.optimizers]

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def step(self) -> None:
        """One step of every member: each optimizer updates its member's slices with their gradients."""
        for k, (optimizer, views) in enumerate(zip(self.optimizers, self.views)):
            for name, view in views.items():
                grad = self.params[name].grad
                view.grad = None if grad is None else grad[k]
            optimizer.step()

    def keep(self, index: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        """Only the members at ``index`` (see :meth:`Pack.keep`), each with its config and state."""
        states = [self.optimizers[k].state_dict() for k in index.tolist()]
        self.configs = [self.configs[k] for k in index.tolist()]
        self._build(params)
        for optimizer, state in zip(self.optimizers, states):
            _load_fused(optimizer, state)

    def state_dict(self, k: int) -> dict[str, Any]:
        """Member ``k``'s optimizer state (a copy), as its trial's ``torch.optim`` optimizer holds it."""
        return copy.deepcopy(self.optimizers[k].state_dict())

    def load_members(self, states: Sequence[dict[str, Any] | None]) -> None:
        """Each member's saved ``torch.optim`` state dict (all members resume, or none does)."""
        if all(s is None for s in states):
            return
        if any(s is None for s in states):
            raise ValueError("a pack resumes all its members or none")
        for optimizer, state in zip(self.optimizers, states):
            _load_fused(optimizer, copy.deepcopy(state))  # torch keeps the given tensors: not the caller's


def _load_fused(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a member's state into its pack optimizer, which keeps the fused kernel (``load_state_dict``
    takes every group setting from the state, and a trial's own checkpoint says unfused)."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group["fused"] = True


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
    if not isinstance(train.x, torch.Tensor):
        raise ValueError("a pack trains on data held in memory; this dataset's files are read by DataLoader "
                         "workers: use --pack 1")  # fmt: skip
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
