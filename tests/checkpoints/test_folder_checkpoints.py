"""DeepSpeed checkpoints are folders: found for resume, validated, pruned like files."""

import os

import torch

from clap_train.checkpoints.files import checkpoint_file, is_valid, newest_valid, prune


def _deepspeed_dir(root, step, complete=True):
    d = os.path.join(root, f"step{step:07d}.ckpt")
    os.makedirs(os.path.join(d, "checkpoint"))
    torch.save(
        {"module": {"w": torch.ones(2)}, "global_step": step},
        os.path.join(d, "checkpoint", "mp_rank_00_model_states.pt"),
    )
    torch.save({"state": 1}, os.path.join(d, "checkpoint", "zero_pp_rank_0_mp_rank_00_optim_states.pt"))
    if complete:  # DeepSpeed writes `latest` last
        with open(os.path.join(d, "latest"), "w") as f:
            f.write("checkpoint")
    return d


def test_folders_are_validated_found_and_pruned(tmp_path):
    dirs = [_deepspeed_dir(str(tmp_path), s) for s in (2, 4, 6)]
    broken = _deepspeed_dir(str(tmp_path), 8, complete=False)  # interrupted while saving
    assert checkpoint_file(dirs[0]).endswith(os.path.join("checkpoint", "mp_rank_00_model_states.pt"))
    assert all(is_valid(d) for d in dirs) and not is_valid(broken)
    assert newest_valid(str(tmp_path)) == dirs[-1]
    removed = prune(str(tmp_path), keep_last=2)
    assert sorted(removed) == dirs[:2] and not any(os.path.exists(d) for d in dirs[:2])
    assert os.path.isdir(dirs[2]) and os.path.isdir(broken)  # never the newest valid one


def test_read_checkpoint_of_a_folder_gives_its_weights(tmp_path):
    from clap_train.checkpoints.load import read_checkpoint

    d = _deepspeed_dir(str(tmp_path), 2)
    ck = read_checkpoint(d)
    assert ck["global_step"] == 2 and torch.equal(ck["state_dict"]["w"], torch.ones(2))
