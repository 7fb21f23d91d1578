"""tuning.timeline: the marks benchmarks/startup.py reads, written only when asked for."""

import time

from tuning.timeline import TIMELINE_ENV, mark


def test_marks_are_appended_in_order_when_the_timeline_is_on(tmp_path, monkeypatch):
    path = tmp_path / "timeline.txt"
    monkeypatch.setenv(TIMELINE_ENV, str(path))
    mark("cli imported")
    mark("ray started")
    lines = [line.split(" ", 1) for line in path.read_text().splitlines()]
    assert [phase for _, phase in lines] == ["cli imported", "ray started"]
    assert float(lines[0][0]) <= float(lines[1][0])


def test_without_the_variable_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(TIMELINE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    mark("cli imported")
    assert list(tmp_path.iterdir()) == []


def test_a_pause_at_a_phase_says_so_and_waits_there(monkeypatch, capsys):
    from tuning.timeline import PAUSE_ENV, mark

    monkeypatch.setenv(PAUSE_ENV, "model logged=0.2")
    started = time.monotonic()
    mark("promoted")  # another phase: no pause
    assert capsys.readouterr().err == ""
    mark("model logged")
    assert time.monotonic() - started >= 0.2
    assert capsys.readouterr().err == f"ovatune: paused at model logged for 0.2 s ({PAUSE_ENV})\n"
