"""The embedded demo: scikit-learn's 8×8 digits, a small MLP, Adam (the README's main command)."""

from search_spaces import SearchSpace, log_uniform, uniform

SPACE = SearchSpace(
    name="digits",
    description=(
        "scikit-learn's bundled 8×8 handwritten digits (no download) with a 2×128 MLP and Adam; "
        "shift: the 19 CIFAR-10-C corruptions at intensities 1-5; OOD: 8×8 patches of the two photos "
        "that ship with scikit-learn."
    ),
    # The CIFAR-10 ranges for β1 and ε; lr narrowed from [1e-3, 1] so that a budget of 8 trials
    # per loss reliably finds a good model (the paper's upper end diverges with Adam).
    ranges={
        "lr": log_uniform(1e-4, 3e-2),
        "adam_beta1": uniform(0.85, 0.99),
        "adam_eps": log_uniform(1e-8, 1e-5),
    },
    trials=8,
    fixed={
        "dataset": "digits",
        "model": "mlp",
        "hidden": [128, 128],
        "optimizer": "adam",
        "batch_size": 64,
        "epochs": 30,
        "checkpoint_every": 5,
    },
    metric="val_accuracy",
    mode="max",
    # A pack of a loss's 8 trials on the CPU: the sweep's trials take 14 s instead of 25 s on 2 cores
    # (benchmarks/pack_sweep.py); the MLP's step is then mostly arithmetic, not overhead.
    pack_on_cpu=8,
)
