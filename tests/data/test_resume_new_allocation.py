"""Resuming on another allocation (a requeue onto other nodes): the step count continues and the shards
still unread in the current pass are shared out among the new readers; no shard is read twice."""

import glob
import tarfile
import warnings

from clap_train.data.datasets import TrainStream
from clap_train.data.decode import AudioSpec
from clap_train.data.loader import TrainLoader as _TrainLoader
from clap_train.data.shards import expand_shards
from clap_train.data.stream import SourceSpec, StreamOpts

OPTS = StreamOpts(seed=3, group_shards=2, buffer_samples=16)
AUDIO = AudioSpec(sample_rate=32000, clip_seconds=0.5)


def keys_of(shard: str) -> set[str]:
    with tarfile.open(shard) as t:
        return {m.name.split(".")[0] for m in t.getmembers() if m.isfile()}


def stream(spec, rank, world, tokenize):
    return TrainStream(
        [spec], AUDIO, OPTS, batch_size=4, steps_per_epoch=100, rank=rank, world=world, n_slots=1, tokenize=tokenize
    )


def test_two_ranks_to_one_reads_the_rest_of_the_pass_without_repeats(synth_root, tokenize):
    shards = sorted(glob.glob(f"{synth_root}/sentences/train/*.tar"))
    assert len(shards) == 6  # 20 clips each
    spec = SourceSpec("sentences", expand_shards(f"{synth_root}/sentences/train"))
    # the old allocation: 2 ranks x 1 worker, 2 steps each (8 clips per rank, inside their first group)
    states, seen = [], set()
    for rank in (0, 1):
        it = iter(stream(spec, rank, 2, tokenize))
        for _ in range(2):
            b = next(it)
            seen |= set(b["key"])
        states.append({"0": b["_data_state"]["state"]})
    sd = {"batches": 2, "slots": states[0], "rank_slots": states, "n_slots": 1, "world": 2, "carry": {}}

    # the new allocation: 1 rank x 1 worker
    loader = _TrainLoader(stream(spec, 0, 1, tokenize), num_workers=0)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        loader.load_state_dict(sd)
    assert any("none is read twice" in str(x.message) for x in w)
    carry = loader.position.carry["sentences"]
    # each old reader had begun one group of 2 shards: 4 shards count as read, 2 remain in this pass
    assert len(carry["remaining"]) == 2
    begun = {s for s in shards if keys_of(s) & seen}  # the shuffle buffer had drawn from some of them
    assert begun and begun <= set(shards) - set(carry["remaining"])
    it = iter(loader)
    new_keys = []
    for _ in range(10):  # 40 clips: exactly the 2 remaining shards
        new_keys += next(it)["key"]
    assert set(new_keys) == keys_of(carry["remaining"][0]) | keys_of(carry["remaining"][1])
    assert not set(new_keys) & seen
    # the state it saves continues the same way after another resume at this allocation
    assert loader.state_dict()["carry"] == {"sentences": carry}
