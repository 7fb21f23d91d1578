"""tuning.timeline: the marks benchmarks/startup.py reads, written only when asked for."""

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
