import numpy as np
import pytest

from vittle.files import save_npy_atomic, write_text_atomic


def test_atomic_writes_replace_the_whole_file_and_leave_no_temporaries(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    write_text_atomic(target, '{"new": 1}')
    assert target.read_text() == '{"new": 1}'
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_npy_atomic(tmp_path / "f.npy", array)
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy", allow_pickle=False), array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "f.npy"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "f.npy"
    save_npy_atomic(target, np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError):
        save_npy_atomic(target, np.array([object()], dtype=object))  # pickle refused: nothing replaced
    np.testing.assert_array_equal(np.load(target, allow_pickle=False), np.zeros(2, dtype=np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npy"]
