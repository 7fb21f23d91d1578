"""Bad input is refused with the valid choices, before Ray starts."""

import socket
import time

import pytest
import ray

from tuning.cli import main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["sweep", "mnist"], "'digits', 'toy2d', 'cifar10', 'cifar100', 'imagenet', 'clinc'"),
        (["sweep", "digits", "--losses", "softmax,hinge"], "choose from: softmax, dm, ova, ova_dm"),
        (["sweep", "digits", "--trials", "0"], "must be a positive integer"),
        (["sweep", "digits", "--trials", "-3"], "must be a positive integer"),
        (["run", "digits", "--scheduler", "hyperband"], "choose from 'fifo', 'asha'"),
        (["sweep", "digits", "--gpus-per-trial", "-1"], "must be >= 0"),
        (["evaluate", "toy3d"], "'digits', 'toy2d'"),
    ],
)
def test_bad_choices_exit_2_with_the_valid_ones(argv, expected, capsys, home):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err
    assert not ray.is_initialized()


def test_unreachable_tracking_server_fails_fast(capsys, home):
    started = time.time()
    code = main(["sweep", "digits", "--tracking-uri", f"http://127.0.0.1:{_closed_port()}"])
    assert code == 2 and time.time() - started < 10
    err = capsys.readouterr().err
    assert "cannot reach the MLflow tracking server" in err and "--tracking-uri" in err
    assert not ray.is_initialized()


@pytest.mark.parametrize("experiment", ["imagenet", "clinc"])
def test_missing_files_of_every_on_disk_dataset_fail_before_ray_starts(capsys, home, tmp_path, experiment):
    assert main(["sweep", experiment, "--data-dir", str(tmp_path)]) == 2
    assert f"looked for {tmp_path}/" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_a_relative_data_dir_reaches_the_trials_as_an_absolute_path(tmp_path, monkeypatch):
    from tuning.parser import build_parser

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["sweep", "cifar10", "--data-dir", "data"])
    assert args.data_dir == str(tmp_path / "data")


def test_missing_cifar_files_fail_before_ray_starts(capsys, home, tmp_path, monkeypatch):
    monkeypatch.delenv("OVATUNE_DATA_DIR", raising=False)
    assert main(["sweep", "cifar10"]) == 2
    assert "pass --data-dir" in capsys.readouterr().err
    assert main(["sweep", "cifar100", "--data-dir", str(tmp_path)]) == 2
    assert f"looked for {tmp_path}/cifar-100-python/test" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_replicate_without_champions_says_what_to_run_before_ray_starts(capsys, home):
    assert main(["replicate", "digits", "--replicates", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ovatune: error: no champion of any loss of 'digits'") and "ovatune sweep digits" in err
    assert "Traceback" not in err and not ray.is_initialized()
    assert main(["replicate", "digits", "--resume"]) == 2
    assert "no replicate set of 'digits' to resume" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["replicate", "digits", "--replicates", "1"], ["run", "digits", "--replicates", "1"],
                                  ["replicate", "digits", "--seeds", "1"]])  # fmt: skip
def test_fewer_than_two_replicates_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and "needs at least 2 replicates" in capsys.readouterr().err


def test_a_replicate_count_is_replicates_on_every_command_and_the_old_spelling_still_works(capsys):
    from tuning.parser import build_parser

    parser = build_parser()
    assert parser.parse_args(["run", "digits", "--replicates", "3"]).replicates == 3
    assert parser.parse_args(["replicate", "digits", "--replicates", "3"]).replicates == 3
    assert parser.parse_args(["replicate", "digits"]).replicates == 5
    assert capsys.readouterr().err == ""
    assert parser.parse_args(["replicate", "digits", "--seeds", "4"]).replicates == 4  # scripts written before
    assert (
        capsys.readouterr().err
        == "ovatune: warning: --seeds is now --replicates; the old spelling goes in the next release\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["sweep", "digits", "--cpus-per-trial", "inf"],  # was accepted: the trial waited forever for resources
        ["sweep", "digits", "--gpus-per-trial", "nan"],  # was accepted
        ["replicate", "digits", "--gpus-per-trial", "inf"],
        ["run", "digits", "--cpus-per-trial=-inf"],
    ],
)
def test_a_non_finite_number_is_a_usage_error_before_anything_starts(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and f"expected a finite number, got {argv[-1].split('=')[-1]!r}" in err


@pytest.mark.parametrize("port", ["0", "70000", "-1"])
def test_a_port_outside_1_to_65535_is_a_usage_error(port, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["ui", "--port", port])
    assert stopped.value.code == 2 and "must be a TCP port from 1 to 65535" in capsys.readouterr().err


def test_help_lists_experiments_and_losses(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "ovatune run digits" in out and "ova_dm (One-vs-all DM)" in out and "cifar100" in out


def test_resume_without_a_sweep_says_where_it_looked(capsys, home):
    assert main(["sweep", "digits", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "no sweep of 'digits' to resume" in err and str(home) in err
    assert not ray.is_initialized()


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "-dash", "sp ace", "x" * 101])
def test_a_sweep_name_that_is_no_name_is_a_usage_error(name, capsys):
    from tuning.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["sweep", "digits", f"--name={name}"])
    assert stopped.value.code == 2 and "invalid name" in capsys.readouterr().err


def test_new_sweep_names_differ_within_a_second():
    from tuning.engine import REPLICATES, SWEEP, check_job_name, new_job_name

    names = {new_job_name(SWEEP, "digits") for _ in range(20)}  # within one second: the old names were all equal
    assert len(names) == 20 and all(check_job_name(n) == n and n.startswith("digits-2") for n in names)
    assert new_job_name(REPLICATES, "digits").startswith("replicates-digits-2")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("htp:/nowhere", "--tracking-uri 'htp:/nowhere': unknown scheme 'htp'; use sqlite:///PATH"),
        ("foo://bar", "unknown scheme 'foo'"),
        (
            "{tmp}/mlflow.db",
            "'{tmp}/mlflow.db' is a file path, not a tracking URI (MLflow's file store is retired): "
            "use sqlite:///{tmp}/mlflow.db",
        ),  # fmt: skip
        ("file://{tmp}/mlruns", "is a file path, not a tracking URI"),
        ("sqlite+nosuchdriver:///{tmp}/x.db", "names a database driver SQLAlchemy does not know"),
        ("mysql://u@127.0.0.1/db", "needs a Python database driver that is not installed (No module named 'MySQLdb')"),
        (
            "postgresql+psycopg2://postgres@127.0.0.1:5432/ovatune_no_such_db",
            "cannot connect to the tracking database postgresql+psycopg2://postgres@127.0.0.1:5432/ovatune_no_such_db",
        ),
    ],
)
def test_a_tracking_uri_mlflow_cannot_use_is_one_error_line(uri, message, capsys, home, tmp_path):
    started = time.time()
    assert main(["evaluate", "digits", "--tracking-uri", uri.format(tmp=tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ovatune: error: ") and len(err.strip().splitlines()) == 1, err
    assert message.format(tmp=tmp_path) in err and time.time() - started < 30


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is not a usable SQLite database ((sqlite3.DatabaseError) database disk image is malformed)"),
        (b"not a database at all\n" * 100, "is not a usable SQLite database ((sqlite3.DatabaseError) file is not a"),
    ],
)
def test_a_truncated_or_foreign_mlflow_db_is_one_error_line(content, message, capsys, home):
    from mlflow.tracking import MlflowClient

    db = home / "mlflow.db"
    home.mkdir(parents=True)
    MlflowClient(f"sqlite:///{db}").create_experiment("digits")  # a real store, then cut short
    db.write_bytes(content if content is not None else db.read_bytes()[: db.stat().st_size // 3])
    assert main(["evaluate", "digits"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ovatune: error: the MLflow store {db} {message}") and "restore it from a backup" in err
    assert len(err.strip().splitlines()) == 1, err


def test_a_locked_mlflow_db_says_so(capsys, home):
    import sqlite3

    from mlflow.tracking import MlflowClient

    home.mkdir(parents=True)
    db = home / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    holder = sqlite3.connect(db, isolation_level=None)  # another writer holding the database
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert main(["evaluate", "digits"]) == 1
    finally:
        holder.close()
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after MLflow's own log of creating the store above
    assert err.startswith(f"ovatune: error: the MLflow store {db} is locked by another process") and "wait for" in err


@pytest.mark.parametrize("command", [["sweep", "digits", "--smoke-test"], ["evaluate", "digits"], ["export", "digits"]])
def test_a_home_that_cannot_be_written_is_one_error_line(command, capsys):
    # /sys/kernel refuses new files even to root: a real unwritable folder
    assert main([*command, "--home", "/sys/kernel"]) == 2
    err = capsys.readouterr().err
    assert err == "ovatune: error: the ovatune home /sys/kernel is not writable (Permission denied): pass --home " \
                  "(or set OVATUNE_HOME to) a folder you can write\n"  # fmt: skip
    assert not ray.is_initialized()


def test_an_unexpected_fault_is_one_line_and_debug_shows_the_traceback(capsys, home, monkeypatch):
    import tuning.commands

    def fault(*args, **kwargs):  # a fault no input can cause: the safety net under every command
        raise OSError(28, "No space left on device", str(home / "reports"))

    monkeypatch.setattr(tuning.commands, "evaluate", fault)
    assert main(["evaluate", "digits"]) == 1
    err = capsys.readouterr().err
    assert err == (f"ovatune: error: OSError ({home / 'reports'}): [Errno 28] No space left on device: "
                   f"'{home / 'reports'}' (--debug shows the traceback)\n")  # fmt: skip
    with pytest.raises(OSError, match="No space left"):
        main(["evaluate", "digits", "--debug"])


def test_every_command_has_help_with_an_example(capsys):
    from tuning.parser import EXAMPLES, build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(EXAMPLES) == set(commands)
    for name in commands:
        with pytest.raises(SystemExit):
            build_parser().parse_args([name, "--help"])
        assert f"example: {EXAMPLES[name]}" in " ".join(capsys.readouterr().out.split()), name


def test_choices_come_from_the_registries():
    from tuning.options import FORMATS, SAMPLERS, SCHEDULERS
    from tuning.parser import build_parser

    for scheduler in SCHEDULERS:
        assert build_parser().parse_args(["sweep", "digits", "--scheduler", scheduler]).scheduler == scheduler
    for sampler in SAMPLERS:
        assert build_parser().parse_args(["sweep", "digits", "--sampler", sampler]).sampler == sampler
    for fmt in FORMATS:
        assert build_parser().parse_args(["export", "digits", "--format", fmt]).format == fmt


@pytest.mark.parametrize(
    ("argv", "dest", "value", "warning"),
    [
        (["export", "digits", "--loss", "ova,dm"], "losses", ["ova", "dm"], "--loss is now --losses"),
        (["status", "--address", "http://h:8265"], "dashboard", "http://h:8265", "--address is now --dashboard"),
        (["logs", "j", "--address", "http://h:8265"], "dashboard", "http://h:8265", "--address is now --dashboard"),
    ],
)
def test_old_spellings_still_work_for_one_release_and_say_the_new_one(argv, dest, value, warning, capsys):
    from tuning.parser import build_parser

    assert getattr(build_parser().parse_args(argv), dest) == value
    assert f"ovatune: warning: {warning}" in capsys.readouterr().err


def test_one_spelling_for_a_list_of_losses():
    from tuning.parser import build_parser

    for command in (["sweep", "digits"], ["run", "digits"], ["submit", "digits"], ["export", "digits"]):
        assert build_parser().parse_args([*command, "--losses", "ova,dm"]).losses == ["ova", "dm"]


HEAVY = ("torch", "ray", "mlflow", "optuna")  # what a --help has no use for (seconds and hundreds of MB)
WHAT_HELP_IMPORTS = """
import sys
from tuning.cli import main
from tuning.parser import EXAMPLES
for command in ["", *EXAMPLES]:  # EXAMPLES: one per command (each command's --help shows its own)
    try:
        main([*command.split(), "--help"])
    except SystemExit as exit:
        assert exit.code == 0, command
    print((command or "ovatune") + ":" + ",".join(m for m in {heavy} if m in sys.modules), file=sys.stderr)
"""


def test_every_help_imports_neither_torch_nor_ray_nor_mlflow():
    """``ovatune --help`` and each command's ``--help``, one after another in one fresh interpreter."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", WHAT_HELP_IMPORTS.format(heavy=HEAVY)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(":", 1) for line in done.stderr.splitlines())
    assert {"ovatune", "run", "sweep", "evaluate", "ui", "corrupt"} <= set(lines)
    assert all(imported == "" for imported in lines.values()), lines
    assert "softmax (Crossentropy)" in done.stdout and "one of: cifar10, cifar100" in done.stdout
