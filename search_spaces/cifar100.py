"""CIFAR-100 with WRN-28-10, SGD Nesterov and L2 (paper Appendix E.3): 50 trials per loss."""

from search_spaces import SearchSpace, log_uniform

SPACE = SearchSpace(
    name="cifar100",
    description=(
        "CIFAR-100, Wide ResNet 28-10, SGD Nesterov 0.9 + L2, 200 epochs, batch 512; shift: "
        "generated CIFAR-100-C (17 corruptions x 5); OOD: CIFAR-10 and SVHN (paper Fig. 3-4, Table S3)."
    ),
    ranges={"lr": log_uniform(1e-4, 1e-1), "l2": log_uniform(1e-5, 1e-3)},
    trials=50,
    fixed={
        "dataset": "cifar100",
        "model": "wide_resnet28_10",
        "optimizer": "sgd_nesterov",
        "momentum": 0.9,
        "batch_size": 512,
        "epochs": 200,
        "warmup_epochs": 1,
        "lr_milestones": [60, 120, 160],
        "lr_gamma": 0.2,
    },
    metric="val_accuracy",
    mode="max",
    resources={"cpu": 4, "gpu": 1},
)
