"""CIFAR-10 with ResNet-20 v1 and Adam (paper Appendix E.2): 100 trials per loss."""

from search_spaces import SearchSpace, log_uniform, uniform

SPACE = SearchSpace(
    name="cifar10",
    description=(
        "CIFAR-10, ResNet-20 v1, Adam with a step schedule, batch 512; shift: CIFAR-10-C "
        "(19 corruptions x 5 intensities); OOD: CIFAR-100 and SVHN (paper Fig. 2, Table S2)."
    ),
    ranges={
        "lr": log_uniform(1e-3, 1.0),
        "adam_beta1": uniform(0.85, 0.99),
        "adam_eps": log_uniform(1e-8, 1e-5),
    },
    trials=100,
    fixed={
        "dataset": "cifar10",
        "model": "resnet20",
        "optimizer": "adam",
        "batch_size": 512,
        "epochs": 200,
        # The paper says only "a learning rate schedule": the Keras ResNet-20 CIFAR-10 schedule.
        "lr_milestones": [80, 120, 160, 180],
        "lr_gamma": 0.1,
    },
    metric="val_accuracy",
    mode="max",
    resources={"cpu": 4, "gpu": 1},
)
