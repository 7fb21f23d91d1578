"""The champion policy (``tuning.champion``): when ``champion`` moves, on a real MLflow registry.

The decision is tested on registered versions in a real SQLite store; the whole path (sweeps that
register, resume, smoke-test, never/always, ``evaluate --sweep``) runs the CLI in
``test_champion_moves_only_when_beaten_end_to_end``.
"""

import re
import subprocess
import sys

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from search_spaces import get_space
from tuning.champion import (
    CHALLENGER,
    CHAMPION,
    champion_versions,
    contest,
    current_champion,
    decide,
    set_alias,
    sweep_versions,
    with_recorded_metric,
)
from tuning.options import POLICIES


@pytest.fixture
def registry(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model("ovatune-digits-softmax")
    return client


def _version(client, sweep: str, accuracy: float | None):
    tags = {"sweep": sweep} | ({"val_accuracy": str(accuracy)} if accuracy is not None else {})
    return client.create_model_version("ovatune-digits-softmax", source="/nowhere", tags=tags)


def test_a_first_model_becomes_champion_under_every_policy_that_registers():
    for policy in [p for p in POLICIES if p != "never"]:  # "never" registers nothing
        assert decide(policy, "val_accuracy", "max", 0.1, None) == (True, "first model of this loss")


@pytest.mark.parametrize(
    ("policy", "mode", "held", "new", "moves"),
    [
        ("better", "max", 0.90, 0.95, True),
        ("better", "max", 0.90, 0.90, False),  # a tie keeps the current champion
        ("better", "max", 0.90, 0.85, False),
        ("better", "min", 0.30, 0.20, True),  # a loss-like metric: lower is better
        ("better", "min", 0.30, 0.40, False),
        ("always", "max", 0.90, 0.10, True),
        ("first", "max", 0.10, 0.99, False),  # a smoke test never replaces a champion unless asked
    ],
)
def test_the_champion_moves_only_as_the_policy_says(registry, policy, mode, held, new, moves):
    champion = _version(registry, "old", held)
    is_champion, reason = decide(policy, "val_accuracy", mode, new, champion)
    assert is_champion is moves
    assert f"v{champion.version}" in reason and str(held) in reason


def test_a_champion_without_the_metric_is_kept_and_the_reason_says_how_to_replace_it(registry):
    champion = _version(registry, "old", None)
    assert decide("better", "val_accuracy", "max", 0.99, champion) == (
        False,
        f"champion v{champion.version} (val_accuracy ?) has no val_accuracy to compare with; "
        "--promote always replaces it",
    )


class SecondToTheAlias(MlflowClient):
    """A sweep's registry client that loses the race for an alias once. Seen in CI, two sweeps in one
    home: both read no champion, both set it, and the second's insert failed on the store's unique
    constraint (MLflow reads, then inserts or updates). The race cannot be caused on demand, so its
    two halves are: the other sweep's write, for real, through its own client, between this sweep's
    read and its write; then this write failing as the store's insert did."""

    def __init__(self, uri: str, other_sweeps_write):
        super().__init__(uri)
        self.other_sweeps_write = other_sweeps_write

    def set_registered_model_alias(self, name, alias, version):
        if self.other_sweeps_write is not None:
            self.other_sweeps_write()
            self.other_sweeps_write = None
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: registered_model_aliases.name")
        super().set_registered_model_alias(name, alias, version)


@pytest.mark.parametrize(("policy", "ours_wins"), [("better", False), ("always", True)])
def test_a_sweep_that_loses_the_race_for_champion_contests_the_winner_again(registry, tmp_path, policy, ours_wins):
    name = "ovatune-digits-softmax"
    theirs, ours = _version(registry, "theirs", 0.9), _version(registry, "ours", 0.8)
    client = SecondToTheAlias(registry.tracking_uri,
                              lambda: registry.set_registered_model_alias(name, CHAMPION, theirs.version))  # fmt: skip
    is_champion, reason, decided_before = contest(client, name, ours, 0.8, get_space("digits"), policy)
    # decided as if this sweep had come second: against the champion the other set, not "first model"
    assert (is_champion, decided_before) == (ours_wins, False)
    assert f"v{theirs.version} (val_accuracy 0.9)" in reason
    assert current_champion(registry, name).version == (ours if ours_wins else theirs).version


# Another sweep's contest in this home, in its own process: it holds the turn, says so, and crowns
# its version a moment later.
OTHER_SWEEPS_CONTEST = """
import sys, time
from mlflow.tracking import MlflowClient
from tuning.champion import CHAMPION
from tuning.store import one_at_a_time

uri, name, version = sys.argv[1:]
with one_at_a_time(uri, "champion"):
    print("holding the turn", flush=True)
    time.sleep(1.5)
    MlflowClient(uri).set_registered_model_alias(name, CHAMPION, version)
"""


def test_contests_in_one_home_take_turns(registry):
    name = "ovatune-digits-softmax"
    theirs, ours = _version(registry, "theirs", 0.9), _version(registry, "ours", 0.8)
    other = subprocess.Popen([sys.executable, "-c", OTHER_SWEEPS_CONTEST, registry.tracking_uri, name, str(theirs.version)],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert other.stdout.readline() == "holding the turn\n"
        is_champion, reason, _ = contest(registry, name, ours, 0.8, get_space("digits"), "better")
    finally:
        other.wait(timeout=60)
    # this contest waited for the other's and lost to the champion it crowned (without turns it read
    # no champion, crowned itself as the "first model", and the other then replaced it unchecked)
    assert not is_champion and f"v{theirs.version} (val_accuracy 0.9)" in reason, reason
    assert current_champion(registry, name).version == theirs.version


def test_setting_an_alias_tells_a_lost_race_from_a_failure(registry):
    name = "ovatune-digits-softmax"
    theirs, ours = _version(registry, "theirs", 0.9), _version(registry, "ours", 0.8)
    client = SecondToTheAlias(registry.tracking_uri,
                              lambda: registry.set_registered_model_alias(name, CHALLENGER, theirs.version))  # fmt: skip
    assert set_alias(client, name, CHALLENGER, ours.version) is False  # the other sweep's stands
    assert registry.get_model_version_by_alias(name, CHALLENGER).version == theirs.version
    assert set_alias(client, name, CHALLENGER, ours.version) is True
    assert registry.get_model_version_by_alias(name, CHALLENGER).version == ours.version
    with pytest.raises(MlflowException):  # nobody else moved it: no such version is a real failure
        set_alias(registry, name, CHAMPION, "99")
    with pytest.raises(MlflowException):  # nor is a failure that leaves the alias where it was
        set_alias(SecondToTheAlias(registry.tracking_uri, lambda: None), name, CHALLENGER, theirs.version,
                  held=registry.get_model_version_by_alias(name, CHALLENGER))  # fmt: skip


def test_lookups_find_the_alias_and_each_sweeps_own_version(registry):
    assert current_champion(registry, "ovatune-digits-softmax") is None
    assert current_champion(registry, "ovatune-digits-no-such-loss") is None
    first, second = _version(registry, "s1", 0.9), _version(registry, "s2", 0.8)
    registry.set_registered_model_alias("ovatune-digits-softmax", CHAMPION, first.version)
    assert current_champion(registry, "ovatune-digits-softmax").version == first.version
    assert [v.version for v in sweep_versions(registry, "ovatune-digits-softmax", "s2")] == [second.version]
    assert sweep_versions(registry, "ovatune-digits-softmax", "s3") == []
    assert {k: v.version for k, v in champion_versions(registry, "digits").items()} == {"softmax": first.version}
    assert {k: v.version for k, v in champion_versions(registry, "digits", "s2").items()} == {"softmax": second.version}


@pytest.mark.slow
def test_champion_moves_only_when_beaten_end_to_end(home, in_process):
    """The commands run in this process, on one local Ray (conftest's ``in_process``)."""
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    name = "ovatune-digits-softmax"

    def _sweep(*args: str) -> str:
        ran = in_process("sweep", "digits", "--losses", "softmax", *args)
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        return ran.stdout

    def versions() -> dict[str, dict]:
        return {str(v.version): v.tags for v in client.search_model_versions(f"name = '{name}'")}

    out = _sweep("--trials", "2", "--epochs", "4", "--name", "real")
    assert f"{name}@champion (v1" in out and "first model of this loss" in out
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert versions()["1"]["smoke_test"] == "false" and versions()["1"]["promotion"].startswith("champion: ")

    # A smoke test after it registers its version and moves neither alias: it used to take
    # @challenger, which a deployment of the challenger would then have served.
    out = _sweep("--smoke-test", "--name", "quick")
    assert "smoke test: champion stays v1" in out and f"{name} v2 (trial 0" in out and "@challenger" not in out
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "1"
    assert versions()["2"]["sweep"] == "quick" and versions()["2"]["smoke_test"] == "true"
    assert versions()["2"]["promotion"].startswith("not promoted: smoke test")

    # A resume that contradicts how the sweep was started is refused, naming each difference.
    refused = in_process("sweep", "digits", "--resume", "--name", "real", "--trials", "5", "--epochs", "9",
                         "--losses", "softmax,ova", "--set", "width=8", "--metric", "val_nll")  # fmt: skip
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    (line,) = [line for line in refused.stderr.splitlines() if line.startswith("ovatune: error:")]
    for difference in ("losses softmax,ova (the sweep has softmax)", "trials_per_loss 5 (the sweep has 2)",
                       "epochs 9 (the sweep has 4)", "width 8 (the sweep has none)",
                       "metric val_nll (the sweep has val_accuracy)"):  # fmt: skip
        assert difference in line, line
    assert "started" not in refused.stdout and "Trial name" not in refused.stdout  # no trial ran

    # Resuming the finished sweep as it was started (options that agree are accepted) registers
    # nothing new: its version is the same one.
    out = _sweep("--resume", "--name", "real", "--epochs", "4")
    assert "resuming sweep real of digits with its own losses, trials and settings" in out
    assert sorted(versions()) == ["1", "2"] and f"{name}@champion (v1" in out
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"

    # --promote never registers nothing; the parent run says what its best trial was.
    out = _sweep("--smoke-test", "--promote", "never", "--name", "unregistered")
    assert sorted(versions()) == ["1", "2"] and "--promote never: not registered" in out
    experiment = client.get_experiment_by_name("digits").experiment_id
    (parent,) = client.search_runs(
        [experiment], "tags.`ovatune.sweep` = 'unregistered' and tags.`ovatune.kind` = 'parent'"
    )
    assert parent.data.tags["ovatune.promotion"].startswith("trial 0 -> not registered")

    # A resume promotes as its sweep was started (it fell back to --promote better: a resumed
    # `--promote never` registered, a resumed smoke test competed), and refuses another policy.
    out = _sweep("--resume", "--name", "unregistered")
    assert sorted(versions()) == ["1", "2"] and "--promote never: not registered" in out
    out = _sweep("--resume", "--name", "quick")
    assert "smoke test: champion stays v1" in out and versions()["2"]["smoke_test"] == "true"
    refused = in_process("sweep", "digits", "--resume", "--name", "quick", "--promote", "always")
    assert refused.returncode == 2 and "promote always (the sweep has first)" in refused.stderr

    # --promote always moves it whatever the numbers.
    out = _sweep("--smoke-test", "--promote", "always", "--name", "forced")
    assert "--promote always: replaced v1" in out
    assert str(client.get_model_version_by_alias(name, "champion").version) == "3"

    # evaluate --sweep measures that sweep's own model and moves no alias.
    result = in_process("evaluate", "digits", "--sweep", "quick")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = home / "reports" / "digits" / "sweeps" / "quick" / "report.md"
    assert str(report) in result.stdout and "sweep quick's models" in result.stdout
    assert re.search(r"\| softmax \| `ovatune-digits-softmax` v2 \| `quick` \| 0 \|", report.read_text())
    assert str(client.get_model_version_by_alias(name, "champion").version) == "3"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "3"
    (evaluation,) = client.search_runs([experiment], "tags.`ovatune.kind` = 'evaluation'")
    assert evaluation.info.run_name == "evaluation · quick" and evaluation.data.tags["ovatune.evaluated"] == "sweep"

    missing = in_process("evaluate", "digits", "--sweep", "unregistered")
    assert missing.returncode == 2 and missing.stderr.startswith("ovatune: error: sweep 'unregistered' registered no")
    assert "Traceback" not in missing.stderr


def test_promote_help_lists_every_policy(capsys):
    from tuning.parser import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for policy in POLICIES:
        assert f"{policy}:" in text


def test_a_champion_from_before_every_metric_was_tagged_is_compared_on_its_trial_runs_value(registry, tmp_path):
    experiment = registry.create_experiment("digits", artifact_location=str(tmp_path / "artifacts"))
    trial = registry.create_run(experiment)
    registry.log_metric(trial.info.run_id, "val_nll", 0.3)
    old = registry.create_model_version("ovatune-digits-softmax", source="/nowhere", run_id=trial.info.run_id,
                                        tags={"sweep": "old", "val_accuracy": "0.9"})  # fmt: skip
    champion = with_recorded_metric(registry, old, "val_nll")
    assert champion.tags["val_nll"] == "0.3" and champion.tags["val_accuracy"] == "0.9"
    assert decide("better", "val_nll", "min", 0.2, champion) == (
        True,
        f"beat v{old.version} (val_nll 0.3) with val_nll 0.2",
    )
    assert with_recorded_metric(registry, old, "val_brier").tags.get("val_brier") is None  # not logged: still unknown
    assert with_recorded_metric(registry, None, "val_nll") is None
