"""The four losses by name, importable without torch.

``ovatune --help`` lists them, and ``--losses`` checks against them, before anything heavy is
imported. :data:`trainables.losses.LOSSES` is the table that implements each (DESIGN §4); it checks
when it is imported that it names exactly these, with these titles, in this order.
"""

# name -> the paper's name for it (tables, figure legends, --help)
LOSS_TITLES = {
    "softmax": "Crossentropy",
    "dm": "DM loss",
    "ova": "One-vs-all",
    "ova_dm": "One-vs-all DM",
}
