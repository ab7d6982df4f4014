"""HTS-AT with long-audio fusion through the real conf/: data keeps long clips whole, the model fuses them."""

import os

import torch

from tests.e2e.conftest import compose_cfg

FUSION = [
    "audio_encoder=htsat_mini",
    "audio_encoder.fusion=true",
    "data.audio.clip_seconds=1.0",
    "data.audio.fusion_max_seconds=3.0",
]


def test_fusion_config_composes_data_and_front_end(tmp_path):
    cfg = compose_cfg(tmp_path, FUSION)
    assert cfg.data.audio.fusion is True  # follows audio_encoder.fusion
    assert compose_cfg(tmp_path, ["audio_encoder=htsat_mini"]).data.audio.fusion is False
    assert compose_cfg(tmp_path, []).data.audio.fusion is False  # PANN has no fusion key


def test_fusion_run_trains_on_whole_long_clips(tmp_path, data_root):
    from clap_train.checkpoints.load import load_model
    from clap_train.run import run

    cfg = compose_cfg(tmp_path, FUSION, data_root)
    from hydra.utils import instantiate

    dm = instantiate(cfg.data, _convert_="all")
    from clap_train.text.tower import TextTower

    dm.bind(TextTower(**{k: v for k, v in cfg.model.text_encoder.items()}).tokenizer)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    sr, clip = cfg.data.audio.sample_rate, int(cfg.data.audio.clip_seconds * cfg.data.audio.sample_rate)
    assert batch["audio"].shape[1] > clip  # synthetic clips are 1.2-2.2 s: kept whole, not cropped to 1 s
    assert (batch["audio_len"] > clip).all() and "longer" not in batch  # every clip longer; the model flags it
    assert int(batch["audio_len"].max()) == batch["audio"].shape[1] <= 3 * sr

    res = run(cfg)
    assert res["global_step"] == 4 and "test/mean/zeroshot_top1" in res["test"]
    model = load_model(os.path.join(res["run_dir"], "checkpoints", "last.ckpt"))
    assert model.audio_branch.fusion and model.frontend.mel_scale == "htk"
    clips = [torch.randn(int(2.5 * sr)), torch.randn(int(0.5 * sr))]
    a, b = model.encode_audio(clips), model.encode_audio(clips)
    assert torch.equal(a, b)  # fixed crops at evaluation
