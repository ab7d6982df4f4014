import os

import pytest
import torch

from clap_train.config import ConfigError
from clap_train.data.datamodule import ClapDataModule


def make_dm(root, workers=2, steps_per_epoch=5, **kw):
    dm = ClapDataModule(
        sources={
            "sentences": {"shards": f"{root}/sentences/train", "weight": 0.7},
            "tags": {"shards": f"{root}/tags/train", "weight": 0.3, "tag_templates": ["{}"]},
        },
        val_sources={"sentences": {"shards": f"{root}/sentences/valid", "zeroshot_classes": f"{root}/classes.json"}},
        batch_size=6,
        eval_batch_size=5,
        num_workers=workers,
        steps_per_epoch=steps_per_epoch,
        audio={"sample_rate": 16000, "clip_seconds": 0.5},
        stream={"seed": 1, "group_shards": 1, "buffer_samples": 8},
        **kw,
    )
    return dm


def take(loader, n=None):
    out = []
    for b in loader:
        out.append(b)
        loader.record(b.pop("_data_state"))
        if n is not None and len(out) == n:
            break
    return out


def test_epoch_has_its_length_and_batches_are_well_formed(synth_root, tokenize):
    dm = make_dm(synth_root).bind(tokenize)
    dl = dm.train_dataloader()
    assert len(dl) == 5
    batches = take(dl)
    assert len(batches) == 5
    for b in batches:
        assert b["audio"].shape == (6, 8000) and b["audio"].dtype == torch.int16  # data.audio.transport
        assert b["text"]["input_ids"].shape[0] == 6 and "longer" not in b  # the model computes it
    keys = [k for b in batches for k in b["key"]]
    assert len(set(zip(keys, [s for b in batches for s in b["source"]]))) == len(keys)  # no repeats in an epoch
    assert {s for b in batches for s in b["source"]} == {"sentences", "tags"}
    assert len(take(dl)) == 5  # the next epoch continues with the same length


def test_loader_resume_with_two_workers_is_exact(synth_root, tokenize):
    """Stop after 3 batches (mid-epoch, odd count), restore the state in a new loader: the rest matches."""
    dl = make_dm(synth_root).bind(tokenize).train_dataloader()
    ref = take(dl) + take(dl)  # two whole epochs
    dl1 = make_dm(synth_root).bind(tokenize).train_dataloader()
    take(dl1, 3)
    state = dl1.state_dict()
    dl2 = make_dm(synth_root).bind(tokenize).train_dataloader()
    dl2.load_state_dict(state)
    resumed = take(dl2) + take(dl2)
    assert len(resumed) == 7
    for got, want in zip(resumed, ref[3:]):
        assert got["key"] == want["key"] and got["source"] == want["source"]  # same source sequence
        assert torch.equal(got["audio"], want["audio"])
        assert torch.equal(got["text"]["input_ids"], want["text"]["input_ids"])


def test_eval_loader_sees_every_clip_once_with_all_captions(synth_root, tokenize):
    dm = make_dm(synth_root).bind(tokenize)
    dm.setup("validate")
    loaders = dm.val_dataloader()
    keys, caps = [], 0
    for b in loaders[0]:
        keys += b["key"]
        caps += len(b["caption_owner"])
        assert int(b["caption_owner"].max()) == len(b["key"]) - 1
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 24 and caps == 72
    assert dm.zeroshot["sentences"][0] == "bell"


def test_config_errors_name_the_key(synth_root, tmp_path):
    with pytest.raises(ConfigError, match="data.sources.gone: no shards"):
        ClapDataModule(sources={"gone": {"shards": str(tmp_path / "missing")}}).train_specs()
    with pytest.raises(ConfigError, match="unknown key"):
        ClapDataModule(sources={"x": {"shards": synth_root, "wieght": 1}}).train_specs()
    dm = ClapDataModule(sources={"x": {"shards": f"{synth_root}/sentences/train"}}, batch_size=6)
    with pytest.raises(ConfigError, match="not divisible"):
        dm.per_rank_batch(4)
    assert dm.resolve_steps_per_epoch() == 120 // 6  # from sizes.json
    assert os.path.exists(f"{synth_root}/sentences/train/sizes.json")


def test_train_shards_shorthand(synth_root):
    dm = ClapDataModule(train_shards=f"{synth_root}/sentences/train/{{000000..000002}}.tar")
    specs = dm.train_specs()
    assert [s.name for s in specs] == ["train"] and len(specs[0].shards) == 3


@pytest.mark.parametrize("steps", [4, 5])  # 4: the workers keep their slots and live on; 5: slots rotate
def test_persistent_workers_give_the_same_batches_and_resume_exactly(synth_root, tokenize, steps):
    def dm(**kw):
        return make_dm(synth_root, steps_per_epoch=steps, **kw).bind(tokenize)

    def keys(batches):
        return [(b["key"], b["source"]) for b in batches]

    ref = dm().train_dataloader()
    want = [take(ref) for _ in range(3)]
    dl = dm(persistent_workers=True, multiprocessing_context="forkserver").train_dataloader()
    got, iters = [], []
    for _ in range(3):
        got.append(take(dl))
        iters.append(dl._iterator)
    assert [keys(g) for g in got] == [keys(w) for w in want]
    assert torch.equal(got[2][-1]["audio"], want[2][-1]["audio"])
    assert (iters[0] is iters[1] is iters[2]) == (steps == 4)  # reused only where that is exact
    # resumed mid-epoch (3 batches in): the partial epoch, then whole ones, as the unbroken run
    one = dm(persistent_workers=True)
    dl1 = one.train_dataloader()
    take(dl1, 3)
    dl2 = dm(persistent_workers=True).train_dataloader()
    dl2.load_state_dict(dl1.state_dict())
    resumed = take(dl2) + take(dl2) + take(dl2)
    flat = [b for w in want for b in w][3:]
    assert keys(resumed) == keys(flat)


def test_eval_loaders_know_their_length(synth_root, tokenize):
    """Validation progress shows k/n: each eval loader's length is its batches on this rank, from sizes.json."""
    dm = make_dm(synth_root).bind(tokenize)
    dm.setup("fit")
    for loader in dm.val_dataloader():
        n = sum(1 for _ in loader)
        assert len(loader) == n >= 1
