"""Fine-tuning from a released LAION-CLAP checkpoint (full size, every reference key) through the real conf/."""

import os

import pytest
import torch

from tests.checkpoints.conftest import laion_state, make_roberta_dir, released_file
from tests.e2e.conftest import compose_cfg


@pytest.mark.slow
def test_finetune_from_laion_pt_trains_and_saves(tmp_path, data_root, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="clap_train")
    from clap_train.checkpoints.load import load_model, read_weights
    from clap_train.run import run

    sd = laion_state(seed=3)
    pt = released_file(tmp_path / "630k-audioset-best.pt", sd)
    # RoBERTa-base shapes (random weights: no download); the tokenizer is a small local BPE
    text_dir = make_roberta_dir(
        tmp_path / "roberta", hidden=768, layers=12, heads=12, max_positions=514, vocab_size=50265, intermediate=3072
    )
    cfg = compose_cfg(
        tmp_path,
        [
            "audio_encoder=htsat_tiny",
            "text_encoder=roberta_base",
            f"text_encoder.name_or_path={text_dir}",
            "text_encoder.pretrained=false",
            "text_encoder.freeze_layers=10",
            "model.embed_dim=512",
            f"init_from={pt}",
            "data.audio.sample_rate=48000",
            "data.batch_size=2",
            "data.eval_batch_size=8",
            "data.steps_per_epoch=2",
            "trainer.max_steps=2",
            "callbacks.best_checkpoint=null",
            "test_after_fit=false",
            "+trainer.limit_val_batches=1",
        ],
        data_root,
    )
    res = run(cfg)
    assert res["global_step"] == 2
    ckpt = os.path.join(res["run_dir"], "checkpoints", "last.ckpt")
    model = load_model(ckpt)
    # started from the LAION weights: frozen text layers are bit-equal to the file, trained ones moved
    imp = read_weights(pt)
    own = model.state_dict()
    frozen = "text_branch.model.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(own[frozen], imp.state_dict[frozen])
    moved = "audio_branch.layers.0.blocks.0.attn.qkv.weight"
    assert not torch.equal(own[moved], imp.state_dict[moved])
    assert (own[moved] - imp.state_dict[moved]).abs().max() < 1e-2  # a fine-tune step, not a re-init
    assert "(laion): loaded" in caplog.text and "missing 0, unexpected 0, shape mismatch 0" in caplog.text


def test_finetune_from_a_hugging_face_folder_offline_builds_its_text_tower(tmp_path, data_root, caplog):
    """`init_from=<HF CLAP folder>` with `text_encoder=roberta_base`, offline: the folder's own text config and
    tokenizer build the text tower (no hub for roberta-base), and every weight of the folder loads."""
    import logging

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from clap_train.checkpoints import hf
    from clap_train.model import build_model
    from clap_train.run import run
    from tests.conftest import REPO

    caplog.set_level(logging.INFO, logger="clap_train")
    towers = ["audio_encoder=htsat_mini", "data.audio.sample_rate=48000"]
    rob = make_roberta_dir(tmp_path / "roberta", hidden=64, max_positions=80)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=os.path.join(REPO, "conf"), version_base="1.3"):
        src = compose(
            "config",
            overrides=[
                "debug=fast",
                *towers,
                "text_encoder=roberta_base",
                f"text_encoder.name_or_path={rob}",
                "text_encoder.pretrained=false",
            ],
        )
    torch.manual_seed(0)
    folder = str(tmp_path / "clap-hf")
    hf.export(build_model(src.model), folder)  # a ClapModel folder: config.json, weights, tokenizer files

    cfg = compose_cfg(
        tmp_path,
        [
            *towers,
            "text_encoder=roberta_base",
            f"init_from={folder}",
            "data.steps_per_epoch=2",
            "+trainer.limit_val_batches=1",
            "test_after_fit=false",
        ],
        data_root,
    )
    res = run(cfg)
    assert res["global_step"] == 2
    assert f"text tower: config and tokenizer from init_from={folder}" in caplog.text
    assert "(hf): loaded" in caplog.text and "missing 0, unexpected 0, shape mismatch 0" in caplog.text
