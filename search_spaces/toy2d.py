"""The paper's 2-D toy problem (Appendix E.1): MLP 2×16, SGD, batch 128, 10 000 steps."""

from search_spaces import SearchSpace, log_uniform

SPACE = SearchSpace(
    name="toy2d",
    description=(
        "Ten 2-D Gaussians on a circle of radius 20 (paper Appendix E.1); a 2×16 MLP trained with "
        "SGD for 10 000 steps. Shows the confidence landscape far from the data (Fig. 1) and the "
        "learned class centres (Fig. S1)."
    ),
    # Plain SGD on these unnormalised inputs: below ~1e-2 it has not converged after 10 000 steps;
    # from ~0.1 up, one-vs-all DM stalls below 90% training accuracy (measured on this data).
    ranges={"lr": log_uniform(1e-2, 5e-2)},
    trials=4,
    fixed={
        "dataset": "toy2d",
        "model": "mlp",
        "hidden": [16, 16],
        "optimizer": "sgd",
        "batch_size": 128,
        # 10 epochs of 1000 steps = the paper's 10 000 steps; an "epoch" here is a reporting period.
        "epochs": 10,
        "steps_per_epoch": 1000,
        "checkpoint_every": 5,
    },
    metric="val_accuracy",
    mode="max",
    # A pack of a loss's 4 trials on the CPU: the sweep's trials take 41 s instead of 54 s on 2 cores.
    pack_on_cpu=4,
)
