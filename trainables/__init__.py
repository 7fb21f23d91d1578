"""Everything that runs inside one trial: losses, models, data and the Ray Tune trainable."""

import os

# Set (to "1") by the driver under --verbose, for every worker: the trial processes then keep Ray
# Tune's and Ray Train's INFO lines (checkpoints, reports) that they otherwise drop as noise.
VERBOSE_ENV = "OVATUNE_VERBOSE"


def verbose() -> bool:
    """Whether the command that started this trial asked for the libraries' notices (``--verbose``)."""
    return os.environ.get(VERBOSE_ENV) == "1"
