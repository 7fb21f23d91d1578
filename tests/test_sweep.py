"""``tuning.sweep``: PerLossSearch, the per-loss seeded Optuna random search, interleaved and
resumable. A whole sweep, its resume and its ASHA are in test_end_to_end and test_engine."""

import math
import warnings

from search_spaces import get_space
from tuning.sweep import PerLossSearch, loss_seed


def _suggest(searcher, n, prefix="t"):
    return [searcher.suggest(f"{prefix}{i}") for i in range(n)]


def test_each_loss_gets_its_budget_interleaved_then_the_searcher_finishes():
    space = get_space("digits")
    searcher = PerLossSearch(space, ["softmax", "ova"], trials_per_loss=3, seed=0)
    configs = _suggest(searcher, 6)
    assert [c["loss"] for c in configs] == ["softmax", "ova"] * 3
    assert [c["trial_number"] for c in configs] == [0, 0, 1, 1, 2, 2]
    assert searcher.suggest("t6") == PerLossSearch.FINISHED
    for c in configs:
        for name, r in space.ranges.items():
            assert r.low <= c[name] <= r.high
            assert math.isfinite(c[name])


def test_sampling_is_seeded_per_loss_and_independent_of_the_other_losses():
    space = get_space("digits")
    alone = _suggest(PerLossSearch(space, ["ova"], 3, seed=5), 3)
    mixed = [c for c in _suggest(PerLossSearch(space, ["softmax", "ova"], 3, seed=5), 6) if c["loss"] == "ova"]
    assert [c["lr"] for c in alone] == [c["lr"] for c in mixed]
    other_seed = _suggest(PerLossSearch(space, ["ova"], 3, seed=6), 3)
    assert [c["lr"] for c in alone] != [c["lr"] for c in other_seed]
    assert loss_seed(5, "ova") == loss_seed(5, "ova") != loss_seed(5, "softmax")


def test_save_and_restore_continue_the_same_sequence(tmp_path):
    space = get_space("digits")
    reference = _suggest(PerLossSearch(space, ["softmax", "dm"], 4, seed=1), 8)
    first = PerLossSearch(space, ["softmax", "dm"], 4, seed=1)
    _suggest(first, 3)
    first.on_trial_complete("t0", {"val_accuracy": 0.9})
    first.on_trial_complete("t1", {"val_accuracy": float("nan")})  # diverged: must not break optuna
    first.save(str(tmp_path / "searcher.pkl"))
    restored = PerLossSearch(space, ["softmax", "dm"], 4, seed=999)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert [restored.suggest(f"t{i}") for i in range(3, 8)] == reference[3:]


def test_a_resumed_trials_repeated_iterations_reach_optuna_once():
    # A trial resumed from its checkpoint (its node died) reports iterations 2 and 3 again: Optuna
    # would ignore them with a warning on the user's terminal.
    searcher = PerLossSearch(get_space("digits"), ["ova"], 1, seed=0)
    _suggest(searcher, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in (1, 2, 3, 2, 3, 4):
            searcher.on_trial_result("t0", {"val_accuracy": 0.1 * step, "training_iteration": step})
    assert not [w for w in caught if "already reported" in str(w.message)], [str(w.message) for w in caught]
    assert searcher.reported == {"t0": 4}
