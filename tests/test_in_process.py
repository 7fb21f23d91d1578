"""conftest's ``in_process``: a command run in the test's process shows what a process of its own would
have printed, the lines the libraries log included (the end-to-end tests that run their commands in
process assert on them: "no Traceback", Ray Tune's "Error handling checkpoint")."""

import logging

import ray.tune  # noqa: F401 - imported at collection, as the suite's modules do: its log handlers made then

import tuning.cli


def test_what_a_library_logs_during_the_command_is_in_its_stderr(home, in_process, monkeypatch):
    def log_as_ray_tune(settings) -> None:
        logging.getLogger("ray.tune.execution.tune_controller").error("Trial x: Error handling checkpoint")

    monkeypatch.setattr(tuning.cli, "_check_home", log_as_ray_tune)  # called by every command that writes
    ran = in_process("export", "digits")
    assert "Trial x: Error handling checkpoint" in ran.stderr, ran.stderr[-2000:]
