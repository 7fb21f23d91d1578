"""CLINC150 intents with BERT-Mini from scratch and Adam (paper Appendix E.5): 30 trials per loss."""

from search_spaces import SearchSpace, uniform

SPACE = SearchSpace(
    name="clinc",
    description=(
        "CLINC150 (clinc_oos, config plus), BERT-Mini (4 layers, 256 hidden, 4 heads) from scratch, "
        "Adam, batch 256, 1000 epochs, max length 32; OOD: the out-of-scope queries (Table S1, Fig. S5)."
    ),
    ranges={"lr": uniform(1e-5, 1e-3)},
    trials=30,
    fixed={
        "dataset": "clinc",
        "model": "bert_mini",
        "optimizer": "adam",
        "batch_size": 256,
        "epochs": 1000,
        "max_length": 32,
    },
    metric="val_accuracy",
    mode="max",
    resources={"cpu": 2, "gpu": 1},
)
