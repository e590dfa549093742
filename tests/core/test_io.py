import os

import pytest

from biowm.core.errors import InvalidInputError
from biowm.core.io import atomic_path, atomic_write_text, check_writable


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_failure_inside_block_leaves_old_file_untouched(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise ValueError
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_check_writable_refuses_missing_dir_and_directories(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        check_writable(tmp_path / "nope" / "x.csv")
    with pytest.raises(InvalidInputError, match="is a directory"):
        check_writable(tmp_path)
    assert check_writable(tmp_path / "ok.csv") == tmp_path / "ok.csv"
    assert not (tmp_path / "ok.csv").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_check_writable_refuses_read_only_dir(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(InvalidInputError, match="cannot write"):
            check_writable(tmp_path / "x.csv")
    finally:
        tmp_path.chmod(0o700)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
