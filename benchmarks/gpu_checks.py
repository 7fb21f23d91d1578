"""The CUDA code paths, checked on a GPU machine (CI has none; the test suite covers the same code on CPU).

Each check asserts, prints PASS or FAIL with its numbers, and the script exits non-zero if any
failed. It needs only PyTorch, torchvision, transformers, tokenizers and Pillow (no Ray, no MLflow),
so it runs on a bare GPU machine:

    PYTHONPATH=. python benchmarks/gpu_checks.py            # every check
    PYTHONPATH=. python benchmarks/gpu_checks.py distance   # only the checks whose name has a given word

1. Batched augmentation on the GPU: seeded, crops inside the padded image, flips are flips.
2. Every corruption on CUDA: the deterministic ones within 2 grey levels of the CPU result (float
   rounding differs), the random ones with the CPU's mean change within 15%.
3. ``fit_epoch`` on CUDA (channels_last, bf16 autocast) for ResNet-20 and WRN (tiny widths), the
   loss falls, and a seeded run repeats to within bf16 noise.
4. ImageNet-style training from JPEG files (DataLoader workers, pinned memory, micro-batches) on
   CUDA, and gradient accumulation equal to the full batch.
5. BERT-Mini (full size) on CUDA under bf16 autocast: a few steps, finite loss.
6. The distance head under CUDA bf16 autocast: distances within 1e-4 of float64 ``cdist`` with
   ‖f‖ ≈ 25 and embeddings 0 to 0.1 from their centres, and an ova_dm step (loss and gradients)
   under bf16 autocast equal to the float32 one.
7. A trial's system metrics on CUDA (``trainables.system_metrics``): while a GPU runs matmuls the
   GPU's utilisation (NVML, needs nvidia-ml-py) is above 50%, its memory held and peak cover the
   tensors made; an idle interval reads low.
8. A pack (``--pack``; ``trainables.pack``: vmap over stacked parameters, bf16 autocast) of three
   ResNet-20 ova_dm trials on CUDA: each member's loss per epoch within bf16 noise of its trial
   trained alone by ``fit_epoch``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from trainables.data import Split
from trainables.data.augment import pad_crop_flip
from trainables.loop import fit_epoch
from trainables.losses import get_loss
from trainables.models import build_classifier
from trainables.optim import build_optimizer

DEVICE = torch.device(os.environ.get("OVATUNE_CHECK_DEVICE", "cuda"))  # "cpu" tries the script out on CPU
RESULTS: list[tuple[str, bool, str]] = []
ONLY = [word.lower() for word in sys.argv[1:]]  # words a check's name must contain to run; none: all


def check(name):
    def run(function):
        if ONLY and not any(word in name.lower() for word in ONLY):
            return function
        started = time.perf_counter()
        try:
            detail = function() or ""
            RESULTS.append((name, True, detail))
        except Exception:  # a failed check is reported, the others still run
            RESULTS.append((name, False, traceback.format_exc(limit=3)))
        status = "PASS" if RESULTS[-1][1] else "FAIL"
        print(f"{status} {name} ({time.perf_counter() - started:.1f} s) {RESULTS[-1][2]}", flush=True)
        return function

    return run


@check("augmentation on the GPU")
def _augmentation():
    images = torch.arange(2 * 3 * 32 * 32, device=DEVICE).reshape(2, 3, 32, 32).remainder(251).to(torch.uint8) + 1
    images = images.repeat(256, 1, 1, 1)  # (512, 3, 32, 32), no zeros
    a = pad_crop_flip(images, torch.Generator(device=DEVICE).manual_seed(1))
    b = pad_crop_flip(images, torch.Generator(device=DEVICE).manual_seed(1))
    assert torch.equal(a, b), "the same seed gave different crops"
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(0, 512, 37):  # each output is some crop of the padded image, maybe flipped
        found = any(
            torch.equal(a[i], view)
            for top in range(9)
            for left in range(9)
            for view in (
                padded[i, :, top : top + 32, left : left + 32],
                padded[i, :, top : top + 32, left : left + 32].flip(-1),
            )  # fmt: skip
        )
        assert found, f"image {i} is not a crop of its padded image"
    flips = sum(not torch.equal(a[i], padded[i, :, 4:36, 4:36]) for i in range(512))
    return f"512 images: seeded; every checked output a crop or flipped crop; {flips} moved or flipped"


@check("every corruption on CUDA vs CPU")
def _corruptions():
    from sklearn.datasets import load_sample_images

    from trainables.data.corruptions import CORRUPTIONS, corrupt

    photos = load_sample_images().images
    images = np.stack([p[r : r + 32, c : c + 32] for p in photos for r in range(0, 256, 32) for c in range(0, 256, 32)])
    deterministic = {"pixelate", "jpeg_compression", "contrast", "brightness", "saturate", "defocus_blur",
                     "gaussian_blur", "zoom_blur"}  # fmt: skip
    worst = []
    for name in CORRUPTIONS:
        cpu = corrupt(torch.from_numpy(images), name, 3, seed=0).numpy().astype(float)
        gpu = corrupt(torch.from_numpy(images).to(DEVICE), name, 3, seed=0).cpu().numpy().astype(float)
        assert gpu.shape == images.shape, name
        if name in deterministic:
            difference = np.abs(gpu - cpu).max()
            assert difference <= 2, f"{name}: CUDA differs from CPU by {difference} grey levels"
            worst.append(f"{name} {difference:.0f}")
        else:
            change_cpu, change_gpu = np.abs(cpu - images).mean(), np.abs(gpu - images).mean()
            relative = abs(change_gpu - change_cpu) / max(change_cpu, 1e-9)
            assert relative <= 0.15, f"{name}: mean change {change_gpu:.2f} on CUDA vs {change_cpu:.2f} on CPU"
            worst.append(f"{name} {relative:.1%}")
    return "max |CUDA-CPU| (deterministic) / mean-change gap (random): " + ", ".join(worst)


def _images() -> Split:
    """1024 32×32 uint8 images whose brightness tells their class (a problem a few epochs learn)."""
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(1024) % 10
    x = (torch.randint(0, 60, (1024, 3, 32, 32), generator=generator) + 19 * y.view(-1, 1, 1, 1)).to(torch.uint8)
    return Split(x, y).to(DEVICE)


def _train(model_name: str, overrides: dict, epochs: int = 4) -> list[float]:
    config = {"model": model_name, "loss": "ova_dm", "optimizer": "adam", "lr": 2e-3, "seed": 0,
              "batch_size": 128, **overrides}  # fmt: skip
    torch.manual_seed(0)
    model = build_classifier((3, 32, 32), 10, config).to(DEVICE).to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config)
    train = _images()
    return [fit_epoch(model, get_loss("ova_dm"), optimizer, train, config, e, pad_crop_flip)[0] for e in range(epochs)]


@check("fit_epoch on CUDA: ResNet-20 and WRN (tiny), bf16, channels_last, seeded")
def _fit():
    details = []
    for name, overrides in (("resnet20", {"width": 8, "depth": 8}), ("wide_resnet28_10", {"depth": 10, "widen": 2})):
        first, again = _train(name, overrides), _train(name, overrides)
        assert all(np.isfinite(first)) and first[-1] < first[0], f"{name}: loss did not fall: {first}"
        gap = max(abs(a - b) for a, b in zip(first, again))
        assert gap < 0.05 * first[0], f"{name}: a seeded rerun differs by {gap}"
        details.append(f"{name} loss {first[0]:.3f}->{first[-1]:.3f}, rerun gap {gap:.1e}")
    return "; ".join(details)


@check("files through DataLoader workers to CUDA, with micro-batches")
def _files():
    from PIL import Image

    from trainables.data.imagenet import EVAL_TRANSFORM, TRAIN_TRANSFORM, ImageFiles

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        samples = []
        for i in range(48):
            path = Path(tmp) / f"{i}.JPEG"
            Image.fromarray((rng.integers(0, 60, (256, 300, 3)) + 90 * (i % 3)).astype(np.uint8)).save(path)
            samples.append((str(path), i % 3))
        files = ImageFiles(samples, TRAIN_TRANSFORM)
        split = Split(files, files.labels).to(DEVICE)
        results = []
        for micro in (None, 8):
            config = {"model": "resnet50", "width": 8, "loss": "softmax", "optimizer": "sgd_nesterov", "lr": 0.05,
                      "seed": 0, "batch_size": 16, "micro_batch_size": micro, "loader_workers": 4}  # fmt: skip
            torch.manual_seed(0)
            model = build_classifier((3, 224, 224), 3, config).to(DEVICE).to(memory_format=torch.channels_last)
            loss, _ = fit_epoch(model, get_loss("softmax"), build_optimizer(model, config), split,
                                config, 0)  # fmt: skip
            assert np.isfinite(loss)
            results.append(loss)
        from trainables.loop import predict_probabilities

        probs = predict_probabilities(model, ImageFiles(samples, EVAL_TRANSFORM), workers=4)
        assert probs.shape == (48, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-3)
    return f"ResNet-50 (width 8) one epoch: loss {results[0]:.3f} (batch 16), {results[1]:.3f} (4 micro-batches of 8)"


@check("BERT-Mini on CUDA under bf16 autocast")
def _bert():
    config = {"model": "bert_mini", "loss": "ova_dm", "optimizer": "adam", "lr": 1e-4, "seed": 0,
              "batch_size": 256, "vocab_size": 8192, "max_length": 32, "pad_id": 0, "steps_per_epoch": 5}  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(5, 8192, (2048, 32), generator=generator)
    x[:, 16:] = 0
    y = torch.randint(0, 150, (2048,), generator=generator)
    torch.manual_seed(0)
    model = build_classifier((32,), 150, config).to(DEVICE)
    optimizer = build_optimizer(model, config)
    losses = [fit_epoch(model, get_loss("ova_dm"), optimizer, Split(x, y).to(DEVICE), config, e)[0] for e in range(3)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    return f"loss {losses[0]:.3f} -> {losses[-1]:.3f} over 15 steps"


@check("distance head exact under bf16 autocast; an ova_dm step under bf16 matches float32")
def _distance_head():
    from trainables.losses import DistanceHead

    torch.manual_seed(0)
    num_classes, dim, batch = 100, 640, 4096  # WRN-28-10's embedding, CIFAR-100's classes
    centres = torch.nn.functional.normalize(torch.randn(num_classes, dim), dim=1) * 25
    labels = torch.randint(0, num_classes, (batch,))
    offsets = torch.nn.functional.normalize(torch.randn(batch, dim), dim=1) * torch.rand(batch, 1) * 0.1
    f = (centres[labels] + offsets).to(DEVICE)  # (B, D)
    head = DistanceHead(dim, num_classes).to(DEVICE)
    with torch.no_grad():
        head.weight.copy_(centres)
    expected = -torch.cdist(f.double(), centres.to(DEVICE).double())  # (B, K)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        distance_error = (head(f).double() - expected).abs().max().item()
    assert distance_error < 1e-4, f"max |distance - float64 cdist| = {distance_error:.2e}"

    method, y = get_loss("ova_dm"), labels.to(DEVICE)
    steps = {}
    for precision in ("float32", "bf16"):
        head.zero_grad(set_to_none=True)
        embeddings = f.clone().requires_grad_(True)
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = head(embeddings)
        loss = method.training_loss(logits.float(), y)
        loss.backward()
        steps[precision] = (loss.item(), head.weight.grad.clone(), embeddings.grad.clone())
    loss_gap = abs(steps["bf16"][0] - steps["float32"][0]) / abs(steps["float32"][0])
    grad_gap = max(
        ((a - b).abs().max() / b.abs().max()).item() for a, b in zip(steps["bf16"][1:], steps["float32"][1:])
    )
    assert loss_gap < 1e-6 and grad_gap < 1e-5, f"bf16 vs float32: loss {loss_gap:.1e}, gradients {grad_gap:.1e}"
    return (
        f"max distance error {distance_error:.1e}; bf16 vs float32 step: loss {loss_gap:.1e}, gradients {grad_gap:.1e}"
    )


@check("system metrics on the GPU")
def _system_metrics():
    from trainables.system_metrics import SystemMeter

    meter = SystemMeter(DEVICE)
    a = torch.randn(4096, 4096, device=DEVICE)  # 64 MiB
    started = time.perf_counter()
    while time.perf_counter() - started < 2.0:
        a = torch.tanh(a @ a)
    torch.cuda.synchronize(DEVICE)
    busy = meter.read()
    time.sleep(2.0)
    idle = meter.read()
    key = "system/gpu_0_utilization_percentage"
    assert busy["system/gpu_0_memory_usage_megabytes"] >= 64, busy
    assert busy["system/gpu_0_peak_memory_megabytes"] >= 64, busy
    assert key in busy, f"no GPU utilisation (is nvidia-ml-py installed?): {busy}"
    assert busy[key] > 50 and idle[key] < busy[key], (busy, idle)
    return (
        f"busy {busy[key]:.0f}% then idle {idle[key]:.0f}%; held {busy['system/gpu_0_memory_usage_megabytes']:.0f} MB"
    )


@check("a pack of three ResNet-20 trials on CUDA (vmap, bf16) follows each trained alone")
def _pack():
    from trainables.pack import Pack, fit_pack_epoch

    base = {"model": "resnet20", "width": 8, "depth": 8, "loss": "ova_dm", "optimizer": "adam", "batch_size": 128}
    configs = [{**base, "lr": lr, "seed": k} for k, lr in enumerate((1e-3, 2e-3, 4e-3))]
    train, loss, epochs = _images(), get_loss("ova_dm"), 3
    alone, models = [], []
    for config in configs:
        torch.manual_seed(config["seed"])
        model = build_classifier((3, 32, 32), 10, config).to(DEVICE)
        optimizer = build_optimizer(model, config)
        alone.append([fit_epoch(model, loss, optimizer, train, config, e, pad_crop_flip)[0] for e in range(epochs)])
        torch.manual_seed(config["seed"])
        models.append(build_classifier((3, 32, 32), 10, config).to(DEVICE))
    pack = Pack(models, configs)
    packed = [fit_pack_epoch(pack, loss, train, e, pad_crop_flip) for e in range(epochs)]  # [epoch][member]
    gap = max(abs(packed[e][k][0] - alone[k][e]) for e in range(epochs) for k in range(len(configs)))
    assert all(np.isfinite(packed[e][k][0]) for e in range(epochs) for k in range(len(configs))), packed
    assert gap < 0.05 * alone[0][0], f"a member's loss differs from its trial's alone by {gap}: {packed} vs {alone}"
    return (
        f"losses alone {[round(a[-1], 3) for a in alone]}, packed {[round(m[0], 3) for m in packed[-1]]}; gap {gap:.1e}"
    )


if __name__ == "__main__":
    print(f"{torch.cuda.get_device_name() if DEVICE.type == 'cuda' else 'CPU'}, torch {torch.__version__}")
    failed = [name for name, ok, _ in RESULTS if not ok]
    print(f"{len(RESULTS) - len(failed)} of {len(RESULTS)} checks passed" + (f"; failed: {failed}" if failed else ""))
    sys.exit(1 if failed else 0)
