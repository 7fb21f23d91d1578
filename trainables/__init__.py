"""Everything that runs inside one trial: losses, models, data and the Ray Tune trainable."""
