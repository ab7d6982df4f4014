"""A Hugging Face folder's feature extractor is our front end: imported from preprocessor_config.json,
written on export, a setting one side cannot express refused by name. Parity is against transformers'
own ClapFeatureExtractor + ClapModel on the same waveforms."""

import json
import os
import shutil

import pytest
import torch

from clap_train.checkpoints import hf
from clap_train.checkpoints.load import load_model
from clap_train.model import build_model
from tests.checkpoints.conftest import small_cfg, small_model, waveforms


@pytest.fixture(scope="module")
def folder(roberta_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf_front")
    hf.export(small_model(roberta_dir), str(out))
    return str(out)


def _edited(folder, tmp_path, legacy=False, **settings):
    """A copy of the folder with its extractor settings changed: in processor_config.json (as transformers
    5 writes it), or with `legacy` in a flat preprocessor_config.json (as the hub's LAION folders have it)."""
    dst = str(tmp_path / "edited")
    shutil.copytree(folder, dst)
    path = os.path.join(dst, "processor_config.json")
    cfg = json.load(open(path))
    cfg["feature_extractor"].update(settings)
    if legacy:
        os.remove(path)
        path, cfg = os.path.join(dst, "preprocessor_config.json"), cfg["feature_extractor"]
    json.dump(cfg, open(path, "w"))
    return dst


def _reference(path, clips):
    from transformers import ClapFeatureExtractor, ClapModel

    fe, ref = ClapFeatureExtractor.from_pretrained(path), ClapModel.from_pretrained(path).eval()
    inp = fe([c.numpy() for c in clips], sampling_rate=fe.sampling_rate, return_tensors="pt")
    with torch.no_grad():
        return ref.get_audio_features(**inp).pooler_output


@pytest.mark.parametrize("legacy", [False, True], ids=["processor_config", "preprocessor_config"])
def test_extractor_settings_are_the_front_end(folder, tmp_path, legacy):
    """transformers' own default band (frequency_min 0), another top, plain zero padding, a 5 s clip:
    the loaded model computes what transformers computes from the folder."""
    path = _edited(folder, tmp_path, legacy, frequency_min=0, frequency_max=12000, padding="pad", max_length_s=5)
    clips = waveforms((5.0, 2.0))
    ours = load_model(path)
    fe = ours.frontend
    assert (fe.f_min, fe.f_max, ours.clip_seconds, ours.pad) == (0.0, 12000.0, 5.0, "pad")
    assert (ours.encode_audio(clips) - _reference(path, clips)).abs().max() <= 1e-5
    # before: LAION's 50 Hz band and repeat padding whatever the folder said -- far off
    laion = load_model(folder)
    assert (laion.encode_audio(clips) - _reference(path, clips)).abs().max() > 1e-2


def test_export_writes_the_front_end_and_reads_back(roberta_dir, tmp_path):
    cfg = small_cfg(roberta_dir)
    cfg["frontend"] = {**cfg["frontend"], "f_min": 20.0, "f_max": 16000.0}
    cfg.update(pad="repeat")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    hf.export(model, str(tmp_path / "out"))
    written = json.load(open(tmp_path / "out" / "processor_config.json"))["feature_extractor"]
    assert (written["frequency_min"], written["frequency_max"], written["padding"]) == (20.0, 16000.0, "repeat")
    assert written["truncation"] == "rand_trunc" and written["fft_window_size"] == 1024
    back = load_model(str(tmp_path / "out"))
    assert (back.frontend.f_min, back.frontend.f_max, back.pad) == (20.0, 16000.0, "repeat")
    clips = waveforms((3.0,))
    assert (back.encode_audio(clips) - _reference(str(tmp_path / "out"), clips)).abs().max() <= 1e-5
    assert torch.equal(back.encode_audio(clips), model.encode_audio(clips))


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"truncation": "fusion"}, "truncation='fusion' while the model has no fusion"),
        ({"truncation": "middle"}, "truncation='middle' (transformers knows rand_trunc, fusion)"),
        ({"feature_size": 80}, "feature_size=80 while the audio tower takes 64 mel bins"),
        ({"padding_value": 1.0}, "padding_value=1.0 (our padding is silence)"),
    ],
)
def test_settings_our_front_end_cannot_hold_are_refused(folder, tmp_path, settings, message):
    with pytest.raises(ValueError, match=r"its feature extractor \(processor_config.json\): cannot represent") as e:
        load_model(_edited(folder, tmp_path, **settings))
    assert message in str(e.value)


def test_folder_without_a_processor_gets_laion_front_end(folder, tmp_path):
    path = str(tmp_path / "bare")
    shutil.copytree(folder, path)
    os.remove(os.path.join(path, "processor_config.json"))
    m = load_model(path)
    assert (m.frontend.f_min, m.frontend.f_max, m.clip_seconds, m.pad) == (50.0, 14000.0, 10.0, "repeatpad")


@pytest.mark.parametrize(
    "change,message",
    [
        ({"frontend": {"win_length": 800}}, "win_length 800 != n_fft 1024"),
        ({"frontend": {"mel_scale": "htk"}}, "mel_scale='htk', mel_norm=None (with truncation rand_trunc"),
        ({"clip_seconds": 7.5}, "clip_seconds=7.5 (the extractor's max_length_s is whole seconds)"),
    ],
)
def test_export_refuses_a_front_end_the_extractor_cannot_hold(roberta_dir, tmp_path, change, message):
    cfg = small_cfg(roberta_dir)
    for k, v in change.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) else v
    with pytest.raises(ValueError, match="cannot write transformers' feature extractor") as e:
        hf.export(build_model(cfg), str(tmp_path / "x"))
    assert message in str(e.value) and not os.path.exists(tmp_path / "x")


def test_fine_tuning_from_a_folder_names_each_front_end_difference(folder, tmp_path, roberta_dir):
    from clap_train.checkpoints.load import init_weights

    path = _edited(folder, tmp_path, frequency_min=0, padding="repeat")
    logs = []
    init_weights(small_model(roberta_dir, seed=3), path, log=logs.append)
    warned = [line for line in logs if line.startswith("warning:")]
    assert warned == [
        f"warning: {path} was trained with model.frontend.f_min=0.0; this run uses 50.0 (set model.frontend.f_min "
        "to match)",
        f"warning: {path} was trained with data.audio.pad='repeat'; this run uses 'repeatpad' (set data.audio.pad "
        "to match)",
    ]
