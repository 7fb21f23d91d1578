"""``trainables.cache``: arrays made once per machine and library version, then read from the cache
folder; what uses it (scikit-learn's digits, stratified splits) gives what scikit-learn gives."""

import subprocess
import sys

import numpy as np
import pytest

from trainables.cache import cached_arrays

from launch import environment


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder of this test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "ovatune"


def test_arrays_are_made_once_then_read_and_a_damaged_file_is_made_again(cache):
    made = []

    def make():
        made.append(1)
        return {"a": np.arange(5), "b": np.ones((2, 3))}

    first = cached_arrays("thing", make)
    again = cached_arrays("thing", make)
    assert len(made) == 1 and (cache / "thing.npz").is_file()
    assert np.array_equal(again["a"], first["a"]) and np.array_equal(again["b"], first["b"])

    (cache / "thing.npz").write_bytes((cache / "thing.npz").read_bytes()[:40])  # cut short (a full disk, a kill)
    assert np.array_equal(cached_arrays("thing", make)["a"], np.arange(5)) and len(made) == 2
    assert np.array_equal(cached_arrays("thing", make)["a"], np.arange(5)) and len(made) == 2  # whole again
    assert [p.name for p in cache.iterdir()] == ["thing.npz"]  # no scratch file left beside it


def test_without_a_writable_cache_folder_the_arrays_are_made_every_time(tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file where the folder would go: nothing can be made in it
    made = []
    for _ in range(2):
        assert cached_arrays("thing", lambda: made.append(1) or {"a": np.zeros(3)})["a"].shape == (3,)
    assert len(made) == 2


def test_a_split_is_scikit_learns_and_a_second_process_needs_no_scikit_learn(cache):
    from sklearn.model_selection import train_test_split

    from trainables.data import stratified_split

    y = np.repeat(np.arange(4), [30, 20, 25, 25])
    keep, held_out = stratified_split(y, 0.2, 7)
    expected = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=7)
    assert np.array_equal(keep, np.sort(expected[0])) and np.array_equal(held_out, np.sort(expected[1]))
    assert not np.array_equal(stratified_split(y, 0.2, 8)[1], held_out)  # another seed, another split
    assert len(list((cache / "splits").iterdir())) == 2

    # The digits once (made), then in a fresh process (read): the same data, and scikit-learn never imported.
    probe = (
        "import sys; from trainables.data import load_dataset; d = load_dataset('digits'); "
        "print(float(d.train.x.sum()), d.val.y.tolist()[:20], float(d.ood['photo_patches'].float().mean()), "
        "d.class_names, 'sklearn' in sys.modules)"
    )
    first, second = (subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                    env=environment()) for _ in range(2))  # fmt: skip
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    data, imported = first.stdout.strip().rsplit(" ", 1)
    assert imported == "True" and second.stdout.strip() == f"{data} False"
