"""Config values a new user gets wrong fail at start-up with one line naming the key, the value and what is
allowed: composed from the real conf/ and run, never a traceback from deep inside, never a silent run."""

import pytest

from tests.e2e.conftest import compose_cfg

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
]


@pytest.mark.parametrize("override,message", BAD, ids=[b[0] for b in BAD])
def test_bad_value_is_refused_at_start_up_in_one_line(tmp_path, data_root, override, message, monkeypatch):
    from clap_train.config import ConfigError
    from clap_train.data.datamodule import ClapDataModule
    from clap_train.run import run

    read = []
    monkeypatch.setattr(ClapDataModule, "setup", lambda self, stage=None: read.append(stage))
    with pytest.raises(ConfigError) as e:
        run(compose_cfg(tmp_path, [override], data_root))
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert not read  # refused before any data was read
