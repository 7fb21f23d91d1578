"""ImageNet with ResNet-50 v1.5, SGD Nesterov, L2 and warm-up (paper Appendix E.4): 50 trials per loss."""

from search_spaces import SearchSpace, log_uniform

SPACE = SearchSpace(
    name="imagenet",
    description=(
        "ImageNet, ResNet-50 v1.5, SGD Nesterov + L2 with warm-up, 90 epochs, batch 4096; "
        "shift: ImageNet-C (paper Fig. S4)."
    ),
    ranges={"lr": log_uniform(0.5, 10.0), "l2": log_uniform(1e-5, 1e-3)},
    trials=50,
    fixed={
        "dataset": "imagenet",
        "model": "resnet50",
        "optimizer": "sgd_nesterov",
        "momentum": 0.9,
        "batch_size": 4096,
        # A trial is 4 DDP workers (below), so each step is 4 x 1024 images; 1024 ResNet-50 images
        # do not fit on one GPU either: each worker accumulates 4 micro-batches of 256 (bf16, ~20 GB
        # on an H100); a smaller card can --set micro_batch_size=128.
        "micro_batch_size": 256,
        "epochs": 90,
        "warmup_epochs": 5,
        "lr_milestones": [30, 60, 80],
        "lr_gamma": 0.1,
    },
    metric="val_accuracy",
    mode="max",
    # per worker; 90 epochs of 1.28 M images (~10^8 per trial) is days on one GPU, hours on four
    resources={"cpu": 8, "gpu": 1, "workers": 4},
)
