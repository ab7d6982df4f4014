"""Every option of every config group composes and resolves; experiments hold deltas only."""

import os

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.conftest import REPO

CONF = os.path.join(REPO, "conf")
GROUPS = [
    "data",
    "audio_encoder",
    "text_encoder",
    "pooling",
    "optim",
    "trainer",
    "logger",
    "callbacks",
    "experiment",
    "debug",
]


def options(group):
    return sorted(f[:-5] for f in os.listdir(os.path.join(CONF, group)) if f.endswith(".yaml"))


def compose_with(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=["paths.run_dir=/tmp/x", *overrides])


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes_and_resolves(group, option):
    needs = {"pretrain_htsat_630k": ["data.laion.root=/d"]}
    cfg = compose_with([f"{group}={option}", *needs.get(option, [])])
    OmegaConf.to_container(cfg, resolve=True)


def test_every_group_has_options():
    for g in GROUPS:
        assert options(g), g


@pytest.mark.parametrize("name", ["pann_cnn14", "pann_cnn10", "pann_cnn6", "pann_tiny"])
def test_audio_encoder_presets_build(name):
    from hydra.utils import instantiate

    enc = instantiate(OmegaConf.to_container(compose_with([f"audio_encoder={name}"]).audio_encoder))
    assert enc.out_dim in (2048, 1024, 512, 64)


def test_experiment_applies_its_deltas():
    cfg = compose_with(["experiment=pann_cnn14"])
    assert cfg.data.batch_size == 2304 and cfg.audio_encoder.name == "cnn14"
    assert cfg.text_encoder.name_or_path == "roberta-base" and cfg.trainer.strategy == "ddp"
    assert cfg.model.clip_seconds == 10.0


def test_mixture_experiment_lists_sources_with_weights():
    cfg = compose_with(["experiment=audiocaps_clotho", "paths.data_dir=/d"])
    assert {k: v.weight for k, v in cfg.data.sources.items()} == {"audiocaps": 0.45, "clotho": 0.35, "audioset": 0.2}
    assert cfg.data.sources.clotho.shards == "/d/clotho/train"
    assert set(cfg.data.val_sources) == {"audiocaps", "clotho"}
    assert cfg.callbacks.best_checkpoint.monitor == "val/mean/t2a_R@1"
    cfg = compose_with(["experiment=audiocaps_clotho", "data.sources.clotho.weight=0.5", "data.sources.audioset=null"])
    assert cfg.data.sources.clotho.weight == 0.5 and cfg.data.sources.audioset is None


def test_published_recipe_and_finetune_presets():
    cfg = compose_with(["experiment=pretrain_htsat_630k", "data.laion.root=/d"])
    assert cfg.audio_encoder.name == "tiny" and cfg.text_encoder.name_or_path == "roberta-base"
    assert cfg.text_encoder.pooling == "pooler" and cfg.text_encoder.max_length == 77
    assert (cfg.data.batch_size, cfg.optim.lr, cfg.optim.warmup_steps, cfg.trainer.max_epochs) == (2304, 1e-4, 3200, 45)
    assert cfg.loss.gather_with_grad and cfg.loss.local_loss and cfg.audio_encoder.spec_augment.time_drop_width == 64
    assert cfg.data.audio.sample_rate == 48000 and cfg.model.frontend.sample_rate == 48000
    # sized for 8 x 80 GB: LAION's 96 clips per GPU per (micro-)batch, small sources resampled
    assert cfg.data.batch_size // (8 * cfg.optim.accumulate) == 96 and cfg.data.laion.resample == "auto"
    from clap_train.config import ConfigError
    from clap_train.run import run

    with pytest.raises(ConfigError, match="needs init_from set"):
        run(compose_with(["experiment=finetune"]))
    ft = compose_with(["experiment=finetune", "init_from=/ckpt/630k.pt"])
    assert ft.optim.lr == 1e-5 and ft.init_from == "/ckpt/630k.pt" and ft.audio_encoder.name == "tiny"


def run_dir_of(overrides):
    """The run directory conf/ resolves for these command-line overrides (as train.py would)."""
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=["paths.root=/r", *overrides], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return cfg.paths.run_dir


def test_run_dir_is_keyed_by_what_changes_the_result():
    # README: `python train.py name=myrun` -> runs/myrun/checkpoints/...
    assert run_dir_of(["name=myrun"]) == "/r/runs/myrun"
    assert run_dir_of([]) == "/r/runs/default"
    lr = run_dir_of(["optim.lr=1e-4", "audio_encoder=htsat_tiny"])
    assert lr.startswith("/r/runs/default-")
    # spelling, order and `++` do not matter
    assert run_dir_of(["audio_encoder=htsat_tiny", "++optim.lr=0.0001"]) == lr
    # keys that do not change the result do not either: train longer, other loggers/workers/cadence
    same = [
        "trainer.max_epochs=20",
        "logger=wandb",
        "data.num_workers=0",
        "callbacks.last_checkpoint.every_n_train_steps=7",
    ]
    assert run_dir_of(["optim.lr=1e-4", *same, "audio_encoder=htsat_tiny"]) == lr
    # ... and what does, does
    assert run_dir_of(["optim.lr=2e-4", "audio_encoder=htsat_tiny"]) != lr
    assert (
        run_dir_of(["optim.lr=1e-4", "audio_encoder=htsat_tiny", "callbacks.best_checkpoint.monitor=val/mean/t2a_R@1"])
        != lr
    )
