"""``tuning.fan_out``: which model a measurement belongs to, and the progress line while they run.
The Ray tasks themselves run in every evaluation end to end (test_end_to_end, test_replicates)."""

from tuning.fan_out import ModelKey, _progress


def test_a_model_key_names_the_selected_model_or_a_replicate():
    assert ModelKey("softmax").label == "softmax" and ModelKey("softmax").replicate is None
    assert ModelKey("ova_dm", 0).label == "ova_dm replicate 0"  # replicate 0 is a replicate, not the selected one
    assert ModelKey("ova", 2) == ("ova", 2) and ModelKey("ova") != ModelKey("ova", 0)


def test_the_progress_line_counts_models_and_shifted_sets():
    assert _progress({}, 0, 4, "3 s") == "evaluating: 0/4 models done · 3 s"
    counts = {"softmax": [10, 95], "dm": [95, 95]}  # (measured, per model) of the models that started
    assert _progress(counts, 1, 4, "35 s") == "evaluating: 1/4 models done · shifted test sets 105/380 · 35 s"
