import os

import pytest

from clap_train.atomic import atomic_path, write_atomic


def test_replaces_whole_or_not_at_all(tmp_path):
    p = str(tmp_path / "sub" / "f.json")
    write_atomic(p, "old")
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("killed mid-write")
    assert open(p).read() == "old"  # the failed write left the old file whole
    assert os.listdir(tmp_path / "sub") == ["f.json"]  # and no temp file behind
    write_atomic(p, b"new", fsync=True)
    assert open(p, "rb").read() == b"new"
