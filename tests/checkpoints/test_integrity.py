"""The digest sealed into our checkpoints: a file whose bytes changed after writing is refused by name
(torch itself reads zeroed tensor bytes without noticing)."""

import zipfile

import pytest
import torch

from clap_train.checkpoints.integrity import KEY, damaged, seal
from clap_train.checkpoints.io import atomic_save


def zero_inside_largest_tensor(path, n=4096):
    """Zero `n` bytes in the middle of the largest tensor's data (not a zip header: torch still loads)."""
    with zipfile.ZipFile(path) as z:
        rec = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(rec.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
        start = rec.header_offset + 30 + name_len + extra_len
        assert rec.file_size > 2 * n
        f.seek(start + rec.file_size // 2)
        f.write(b"\0" * n)


def test_sealed_checkpoint_round_trips_and_a_changed_one_is_damaged(tmp_path):
    ck = {"state_dict": {"w": torch.randn(64, 64), "b": torch.zeros(3, dtype=torch.bfloat16)}, "step": 7, "t": (1, "a")}
    path = str(tmp_path / "a.ckpt")
    atomic_save(ck, path)
    back = torch.load(path, weights_only=True, mmap=True)
    assert KEY in back and not damaged(back)  # tuples come back as tuples or lists: the same digest
    back["step"] = 8
    assert damaged(back)
    zero_inside_largest_tensor(path)
    assert damaged(torch.load(path, weights_only=True))  # torch loads it; the digest does not match
    assert not damaged({"state_dict": {}})  # unsealed (LAION's files, DeepSpeed folders): nothing to check
    assert seal({"x": {3, 1}})[KEY] == seal({"x": {1, 3}})[KEY]


def test_zeroed_bytes_are_refused_on_load_resume_and_by_the_cli(small_ckpt, tmp_path, capsys):
    from clap_train.checkpoints.files import is_valid
    from clap_train.checkpoints.load import DamagedCheckpoint, read_checkpoint
    from clap_train.cli import main

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(open(small_ckpt, "rb").read())
    read_checkpoint(str(bad))  # intact before
    zero_inside_largest_tensor(str(bad))
    with pytest.raises(DamagedCheckpoint, match="is damaged: its contents do not match the digest"):
        read_checkpoint(str(bad))
    step = {"state_dict": {"w": torch.randn(256, 64)}, "global_step": 3}
    atomic_save(step, str(tmp_path / "step0000003.ckpt"))
    assert is_valid(str(tmp_path / "step0000003.ckpt"))
    zero_inside_largest_tensor(str(tmp_path / "step0000003.ckpt"))
    assert not is_valid(str(tmp_path / "step0000003.ckpt"))  # resume passes over it to an older one
    assert main(["embed", "--checkpoint", str(bad), "--text", "a dog", "--out", str(tmp_path / "e.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad} is damaged") and "\n" not in err, err
