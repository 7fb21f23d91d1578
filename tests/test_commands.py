"""``tuning.commands``: what each command refuses before Ray starts, in one ``ovatune: error:`` line
that says what to do (a dataset's missing files, nothing to replicate or resume). What every
command shares (home, store, faults) is test_cli; each command's whole run is in the test of its
service (test_end_to_end, test_replicates, test_export, test_evaluate, test_jobs, test_ui)."""

import pytest
import ray

from tuning.cli import main


@pytest.mark.parametrize("experiment", ["imagenet", "clinc"])
def test_missing_files_of_every_on_disk_dataset_fail_before_ray_starts(capsys, home, tmp_path, experiment):
    assert main(["sweep", experiment, "--data-dir", str(tmp_path)]) == 2
    assert f"looked for {tmp_path}/" in capsys.readouterr().err
    assert not ray.is_initialized()


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


def test_resume_without_a_sweep_says_where_it_looked(capsys, home):
    assert main(["sweep", "digits", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "no sweep of 'digits' to resume" in err and str(home) in err
    assert not ray.is_initialized()


def test_an_export_folder_that_is_a_file_is_one_usage_error(capsys, home, tmp_path):
    """It was printed once per loss, with exit 1."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert main(["export", "digits", "--losses", "softmax,dm", "--out", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert err == f"ovatune: error: --out {a_file} is a file, not a folder: pass a folder for the exports\n"
