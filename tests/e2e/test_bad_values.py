"""Config values a new user gets wrong fail at start-up with one line naming the key, the value and what is
allowed: `python train.py <override>` as a user types it (run in this process, so the table costs seconds,
not a process start each), never a traceback from deep inside, never a silent run."""

import pytest
import torch

from tests.e2e.conftest import SMALL_DATA, train_py_in_process

BAD = [
    ("data.batch_size=0", "data.batch_size=0: must be a whole number >= 1"),
    ("data.batch_size=-3", "data.batch_size=-3: must be a whole number >= 1"),
    ("data.eval_batch_size=0", "data.eval_batch_size=0: must be a whole number >= 1"),
    ("data.num_workers=-1", "data.num_workers=-1: must be a whole number >= 0 and <= 256"),
    ("data.steps_per_epoch=0", "data.steps_per_epoch=0: must be a whole number >= 1 (or null)"),
    ("data.audio.clip_seconds=-2", "data.audio.clip_seconds=-2: must be a number > 0 and <= 3600"),
    ("data.audio.sample_rate=0", "data.audio.sample_rate=0: must be a whole number >= 1000 and <= 384000"),
    ("data.audio.pad=zeros", "data.audio.pad='zeros'; valid choices: repeatpad, repeat, pad"),
    ("data.audio.train_crop=random", "data.audio.train_crop='random'; valid choices: rand_trunc, start, center"),
    ("optim.accumulate=0", "optim.accumulate=0: must be a whole number >= 1"),
    ("optim.lr=-1", "optim.lr=-1: must be a number > 0"),
    ("optim.weight_decay=-0.1", "optim.weight_decay=-0.1: must be a number >= 0"),
    ("optim.betas=[0.9,1.5]", "optim.betas[1]=1.5: must be a number >= 0 and <= 0.999999"),
    ("optim.warmup_steps=2.5", "optim.warmup_steps=2.5: must be a whole number >= 0"),
    ("optim.min_lr_ratio=2", "optim.min_lr_ratio=2: must be a number >= 0 and <= 1"),
    ("optim.fused=sometimes", "optim.fused='sometimes'; valid choices: auto, True, False"),
    ("text_encoder.max_length=0", "text_encoder.max_length=0: must be a whole number >= 1"),
    ("text_encoder.freeze_layers=99", "text_encoder.freeze_layers=99: must be <= 2, the model's layers"),
    ("pooling.name=max", "pooling.name='max'; valid choices: "),
    ("audio_encoder.freeze_layers=99", "audio_encoder.freeze_layers=99; valid: 0.."),
    (
        "callbacks.best_checkpoint.monitor=val/mean/zeroshot_top9",
        "callbacks.best_checkpoint.monitor='val/mean/zeroshot_top9': no validation source logs it; valid choices: auto",
    ),
    # the typed blocks (clap_train/schema.py)
    ("+optim.lrr=1", "optim: unknown key(s) ['lrr']; valid keys: lr, weight_decay,"),
    ("optim.schedule=linear", "optim.schedule='linear'; valid choices: cosine, constant"),
    ("optim.total_steps=0", "optim.total_steps=0: must be a whole number >= 1 (or null)"),
    ("optim.max_nonfinite=-1", "optim.max_nonfinite=-1: must be a whole number >= 0"),
    ("loss.local_loss=maybe", "loss.local_loss='maybe': must be true or false"),
    ("+loss.temperature=0.07", "loss: unknown key(s) ['temperature']; valid keys: local_loss, gather_with_grad"),
    ("eval.templates=[a dog]", "eval.templates=['a dog']: must be a list of prompts with {} for the class name"),
    ("compile.text_pad_multiple=0", "compile.text_pad_multiple=0: must be a whole number >= 1 (or null)"),
    ("compile.enabled=yes", "compile.enabled='yes': must be true or false"),
    ("distributed.timeout_s=0", "distributed.timeout_s=0: must be a number > 0"),
    ("resume=sometimes", "resume='sometimes'; valid choices: auto, never"),
    ("seed=abc", "seed='abc': must be a whole number"),
    ("synthetic.n_valid=0", "synthetic.n_valid=0: must be a whole number >= 1"),
    (
        "+data.sources.tags.resample=sometimes",
        "data.sources.tags.resample='sometimes'; valid choices: true, false, auto",
    ),
    ("data.sources.tags.weight=-1", "data.sources.tags.weight=-1: must be a number >= 0"),
    ("+data.sources.tags.captions=text", "data.sources.tags: unknown key(s) ['captions']; valid keys: shards, weight,"),
    ("data.sources.sentencs.weight=0.5", "data.sources.sentencs: no such source and no shards given; sources of"),
    # offline (tests/conftest.py sets HF_HUB_OFFLINE=1): a hub id not in the cache, not transformers' traceback
    ("text_encoder=roberta_base", "text_encoder.name_or_path='roberta-base': not a local folder, and not in the"),
    ("text_encoder.name_or_path=/no/such/bert", "text_encoder.name_or_path='/no/such/bert': not a local folder"),
]
if not torch.cuda.is_available():  # as on a laptop: Lightning's own exception before
    BAD.append(("trainer=gpu", "trainer.accelerator=gpu: no CUDA device is visible to torch"))


@pytest.mark.parametrize("override,message", BAD, ids=[b[0] for b in BAD])
def test_bad_value_is_refused_at_start_up_in_one_line(tmp_path, data_root, override, message, monkeypatch):
    from clap_train.data.datamodule import ClapDataModule

    read = []
    monkeypatch.setattr(ClapDataModule, "setup", lambda self, stage=None: read.append(stage))
    args = ["debug=fast", f"paths.root={tmp_path}", *SMALL_DATA, f"synthetic.root={data_root}", override]
    code, _, err = train_py_in_process(args)
    assert code == 2, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), err[-2000:]
    assert "Traceback" not in err
    assert not read  # refused before any data was read
