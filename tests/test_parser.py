"""``tuning.parser``: every command's options, their types and help; what it refuses is a usage error
(exit 2) before anything starts, and ``--help`` stays light. (What the commands then check is test_cli.)"""

import pytest

from tuning.cli import main


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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sweep", "digits", "--gpus-per-trial", "1.5"], "a fraction of one GPU or a whole number of GPUs, got 1.5"),
        (["replicate", "digits", "--cpus-per-trial", "0.00001"], "Ray schedules at least 0.0001 of a resource"),
        (["sweep", "digits", "--trials", "10000000000"], "a positive integer of at most 1,000,000, got 10000000000"),
        (["run", "digits", "--epochs", "0"], "a positive integer of at most 1,000,000, got 0"),
        (["sweep", "digits", "--cpus-per-trial", "1e12"], "must be at most 1,000,000, got 1e12"),
    ],
)
def test_an_absurd_number_is_a_usage_error_before_anything_starts(argv, message, capsys):
    """Before, all but --epochs 0 were accepted: a GPU or CPU amount Ray refuses failed only once Ray had
    started, and a count of ten billion trials would have run for years."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("fraction", ["0.25", "0.3333", "2"])
def test_fractions_of_a_gpu_and_whole_gpus_are_accepted(fraction):
    from tuning.parser import build_parser

    assert build_parser().parse_args(["sweep", "digits", "--gpus-per-trial", fraction]).gpus_per_trial == float(
        fraction
    )


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


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "-dash", "sp ace", "x" * 101])
def test_a_sweep_name_that_is_no_name_is_a_usage_error(name, capsys):
    from tuning.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["sweep", "digits", f"--name={name}"])
    assert stopped.value.code == 2 and "invalid name" in capsys.readouterr().err


def test_new_sweep_names_differ_within_a_second():
    from tuning.engine import REPLICATES, SWEEP, new_job_name
    from tuning.storage import check_job_name

    names = {new_job_name(SWEEP, "digits") for _ in range(20)}  # within one second: the old names were all equal
    assert len(names) == 20 and all(check_job_name(n) == n and n.startswith("digits-2") for n in names)
    assert new_job_name(REPLICATES, "digits").startswith("replicates-digits-2")


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


def test_a_relative_data_dir_reaches_the_trials_as_an_absolute_path(tmp_path, monkeypatch):
    from tuning.parser import build_parser

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["sweep", "cifar10", "--data-dir", "data"])
    assert args.data_dir == str(tmp_path / "data")
