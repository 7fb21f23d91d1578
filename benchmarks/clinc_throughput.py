"""Training throughput of the full BERT-Mini on CLINC-shaped batches, through the trainable's own loop.

``trainables.loop.fit_epoch`` (what every trial runs) with the ``clinc`` space's settings: BERT-Mini
from scratch (4 layers, hidden 256, 4 heads, intermediate 1024), Adam, batch 256, 32 token ids per
sentence, a softmax head over 150 intents. The ids are random over an 8 192-entry vocabulary (the
tokenizer's upper bound; the speed does not depend on which ids), with realistic padding: sentence
lengths drawn from 6 to 20 tokens, as CLINC queries are.

It prints sentences/s of training, and the time of one epoch of CLINC ``plus`` (15 000 in-scope
training sentences, 59 steps) with the validation pass over its 3 000 validation sentences.

    python benchmarks/clinc_throughput.py [--steps 8] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

from search_spaces import get_space
from trainables.data import Split
from trainables.loop import fit_epoch, predict_probabilities
from trainables.losses import get_loss
from trainables.models import build_classifier
from trainables.optim import build_optimizer

VOCAB, LENGTH, INTENTS = 8192, 32, 150
PLUS_TRAIN, PLUS_VAL = 15_000, 3_000


def sentences(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 32) token ids: [CLS]=2, 4–18 word pieces, [SEP]=3, then [PAD]=0."""
    ids = torch.randint(5, VOCAB, (n, LENGTH), generator=generator)
    lengths = torch.randint(6, 21, (n, 1), generator=generator)
    position = torch.arange(LENGTH).expand(n, LENGTH)
    ids[:, 0] = 2
    ids = torch.where(position == lengths - 1, torch.full_like(ids, 3), ids)
    return torch.where(position >= lengths, torch.zeros_like(ids), ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="timed training steps (after 2 warm-up steps)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    space = get_space("clinc")
    config = {**space.fixed, "loss": "softmax", "lr": 1e-4, "seed": 0, "vocab_size": VOCAB, "pad_id": 0}
    batch = int(config["batch_size"])
    generator = torch.Generator().manual_seed(0)
    train = Split(sentences(PLUS_TRAIN, generator), torch.randint(0, INTENTS, (PLUS_TRAIN,), generator=generator))
    val_x = sentences(PLUS_VAL, generator).to(device)
    train = train.to(device)
    torch.manual_seed(0)
    model = build_classifier((LENGTH,), INTENTS, config).to(device)
    optimizer = build_optimizer(model, config)
    method = get_loss("softmax")

    def run(steps: int, epoch: int) -> float:
        started = time.perf_counter()
        fit_epoch(
            model, method, optimizer, train, {**config, "steps_per_epoch": steps}, epoch
        )  # reads the loss: synced
        return time.perf_counter() - started

    run(2, 0)  # warm-up
    step_s = run(args.steps, 1) / args.steps
    started = time.perf_counter()
    predict_probabilities(model, val_x)
    val_s = time.perf_counter() - started
    steps_per_epoch = math.ceil(PLUS_TRAIN / batch)
    name = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"CPU ({os.cpu_count()} cores, {args.threads} threads)"
    )
    parameters = sum(p.numel() for p in model.body.parameters())
    print("$ python " + " ".join(sys.argv))
    print(
        f"device: {name}, torch {torch.__version__}; BERT-Mini body {parameters / 1e6:.2f} M parameters, batch {batch}"
    )
    print(f"training: {batch / step_s:,.0f} sentences/s ({step_s * 1000:.0f} ms per step of {batch})")
    print(f"one CLINC plus epoch ({PLUS_TRAIN} sentences, {steps_per_epoch} steps) + validation ({PLUS_VAL}): "
          f"{steps_per_epoch * step_s + val_s:.1f} s; the paper's 1000 epochs: {(steps_per_epoch * step_s + val_s) * 1000 / 3600:.1f} h per trial")  # fmt: skip


if __name__ == "__main__":
    main()
