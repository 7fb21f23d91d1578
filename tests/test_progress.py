"""``tuning.progress.ProgressLine``: rewritten in place on a terminal, plain and sparse in a log."""

import io

from tuning.progress import WIDTH, ProgressLine


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
