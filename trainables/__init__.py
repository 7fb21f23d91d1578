"""Everything that runs inside one trial: methods, models, data and the Ray Tune trainable."""
