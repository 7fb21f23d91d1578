"""``tuning.progress.ProgressLine``: rewritten in place on a terminal, plain and sparse in a log."""

import io
import pickle
import time

from tuning.progress import REPORT_EVERY_S, WIDTH, ProgressLine, SweepProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_log_it_prints_plain_lines_no_more_often_than_asked():
    log = io.StringIO()
    line = ProgressLine(log, log_every_s=3600)
    for done in range(5):
        line.update(f"evaluating: {done}/5 models done")
    line.close("evaluated 5 of 5 models in 3 s")
    assert log.getvalue().splitlines() == ["evaluating: 0/5 models done", "evaluated 5 of 5 models in 3 s"]
    assert "\r" not in log.getvalue()


def test_on_a_terminal_it_rewrites_one_line_that_fits_80_columns():
    terminal = Terminal()
    line = ProgressLine(terminal)
    line.update("x" * 200)
    line.update("short")
    line.close("done")
    frames = [frame.rstrip("\n") for frame in terminal.getvalue().split("\r")[1:]]
    assert frames[0] == "x" * WIDTH  # cut to the width
    assert frames[1] == "short".ljust(WIDTH)  # blanks over what the longer line left
    assert frames[2] == "done ".ljust(len("short"))
    assert terminal.getvalue().endswith("\n") and terminal.getvalue().count("\n") == 1


class FakeTrial:
    def __init__(self, loss: str, status: str, accuracy: float | None = None):
        self.config, self.status = {"loss": loss}, status
        self.last_result = {} if accuracy is None else {"val_accuracy": accuracy}


def test_the_sweep_line_counts_each_losss_trials_and_its_best_so_far():
    log = io.StringIO()
    progress = SweepProgress("val_accuracy", "max", per_loss=3, line=ProgressLine(log, log_every_s=0))
    progress.setup(total_samples=6)
    trials = [FakeTrial("softmax", "TERMINATED", 0.91), FakeTrial("softmax", "RUNNING", 0.95),
              FakeTrial("ova_dm", "ERROR"), FakeTrial("ova_dm", "PENDING")]  # fmt: skip
    text = progress.describe(trials)
    assert text.startswith("softmax 1/3 .950 · ova_dm 1/3 · ") and text.endswith(" left")
    assert len(text) <= WIDTH
    progress.report(trials, done=False)
    assert log.getvalue().splitlines()[0].startswith("progress per loss: trials done/all and the best val_accuracy")


def test_tune_is_told_to_report_at_most_twice_a_second_and_always_at_the_end():
    """Tune asks after every step of its loop, and each report describes every trial: a cost that
    grew with the sweep (``benchmarks/scale.py --profile``)."""
    progress = SweepProgress("val_accuracy", "max", per_loss=3)
    assert progress.should_report([]) and not progress.should_report([])
    assert progress.should_report([], done=True)  # the last line is never left out
    time.sleep(REPORT_EVERY_S)
    assert progress.should_report([])
    resumed = pickle.loads(pickle.dumps(progress))
    assert resumed.should_report([])  # a resumed sweep's first report comes at once


def test_the_sweep_line_survives_the_pickling_of_a_resumable_experiment():
    progress = pickle.loads(pickle.dumps(SweepProgress("val_nll", "min", per_loss=2)))
    assert progress.describe([FakeTrial("dm", "TERMINATED", None)]).startswith("dm 1/2 · ")


def test_in_a_log_a_long_line_is_kept_whole():
    log = io.StringIO()
    ProgressLine(log, log_every_s=0).update("y" * 120)
    assert log.getvalue() == "y" * 120 + "\n"
