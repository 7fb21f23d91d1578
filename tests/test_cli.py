"""``tuning.cli`` and ``tuning.commands``: the checks every command shares (home, store, data,
permissions) refuse bad input with one error line before Ray starts, and a fault is one line too.
(What the parser refuses is test_parser; what the store's checks refuse, test_store.)"""

import pytest
import ray

from tuning.cli import main


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
