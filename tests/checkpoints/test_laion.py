"""LAION-CLAP's released layout: every key of the reference list imports, exports back, and maps onto
transformers' ClapModel names."""

import os

import pytest
import torch

from clap_train.checkpoints import hf, laion
from clap_train.checkpoints.load import load_model, read_checkpoint, read_weights
from tests.checkpoints.conftest import laion_state, make_roberta_dir, reference_keys, released_file

DROPPED_PREFIXES = (
    "audio_branch.spectrogram_extractor.",
    "audio_branch.logmel_extractor.",
    "audio_branch.tscam_conv.",
    "audio_branch.head.",
    "audio_transform.",
    "text_transform.",
    "text_branch.embeddings.position_ids",
)


def test_config_read_off_the_keys():
    for fusion in (False, True):
        cfg = laion.model_config(laion_state(fusion, meta=True))
        a = cfg["audio_encoder"]
        assert (a["name"], a["fusion"], a["spec_size"], a["window_size"], a["n_mels"]) == ("tiny", fusion, 256, 8, 64)
        assert cfg["frontend"]["mel_scale"] == ("htk" if fusion else "slaney") and cfg["embed_dim"] == 512
    t = laion.text_config(laion_state(meta=True))
    assert (
        t["vocab_size"],
        t["hidden_size"],
        t["num_hidden_layers"],
        t["num_attention_heads"],
        t["intermediate_size"],
        t["max_position_embeddings"],
    ) == (50265, 768, 12, 12, 3072, 514)


@pytest.mark.parametrize("fusion", [False, True], ids=["unfused", "fused"])
def test_laion_to_ours_to_hf_matches_transformers_names(fusion):
    """LAION keys -> ours -> transformers' names equal a ClapModel of the same config, key for key and
    shape for shape (built on the meta device: no memory, no download)."""
    from transformers import ClapModel

    from clap_train.audio.htsat import build_htsat

    raw = laion_state(fusion, meta=True)
    ours, dropped = laion.to_ours(raw)
    assert all(k.startswith(DROPPED_PREFIXES) or k.endswith("attn_mask") for k in dropped)
    with torch.device("meta"):
        enc = build_htsat("tiny", fusion=fusion)
    want_audio = {"audio_branch." + k: v.shape for k, v in enc.state_dict().items()}
    got_audio = {k: v.shape for k, v in ours.items() if k.startswith("audio_branch.")}
    assert got_audio == want_audio
    text = laion.text_config(raw)
    cfg = hf_clap_config(text, fusion)
    with torch.device("meta"):
        ref = ClapModel(cfg)
    want = {k: v.shape for k, v in ref.state_dict().items() if k not in hf.HF_DERIVED}
    assert {k: v.shape for k, v in hf.to_hf(ours).items()} == want


def hf_clap_config(text: dict, fusion: bool):
    from transformers import ClapConfig

    t = {k: v for k, v in text.items() if k != "model_type"}
    return ClapConfig(
        text_config=dict(t, projection_dim=512),
        projection_dim=512,
        audio_config=dict(enable_fusion=fusion, projection_dim=512),
    )


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    d = tmp_path_factory.mktemp("laion")
    sd = laion_state()
    return released_file(d / "630k-audioset-best.pt", sd), sd, make_roberta_dir(d / "tok")


@pytest.mark.slow
def test_released_file_loads_safely_with_every_key(released, tmp_path):
    """The full-size file (module. prefixes, position_ids, numpy scalars) loads with weights_only=True,
    no opt-in, no missing or unexpected key; export to LAION's layout gives back the same file contents."""
    path, sd, tok = released
    ck = read_checkpoint(path)  # weights_only with numpy's scalar classes allowed
    assert int(ck["epoch"]) == 45
    imp = read_weights(path)
    assert imp.origin == "laion"
    assert sorted(imp.dropped) == sorted(k for k in sd if k.startswith(DROPPED_PREFIXES) or k.endswith("attn_mask"))
    model = load_model(path, tokenizer=tok)  # strict: raises on any missing/unexpected key
    assert model.audio_branch.out_dim == 768 and not model.audio_branch.fusion
    assert model.text_branch.model.config.num_hidden_layers == 12
    for k, v in imp.state_dict.items():
        assert torch.equal(model.state_dict()[k], v), k
    assert not laion.check_derived(imp.raw, model)  # filterbank and shift masks equal to ours
    odd = dict(imp.raw, **{"audio_branch.logmel_extractor.melW": imp.raw["audio_branch.logmel_extractor.melW"] * 2})
    assert "melW differs" in laion.check_derived(odd, model)[0]
    # export back: the same key set and shapes as the reference, the same values where they are weights
    back = laion.from_ours(model)
    ref = reference_keys()
    ref["text_branch.embeddings.position_ids"] = ((1, 514), torch.int64)
    assert {k: tuple(v.shape) for k, v in back.items()} == {k: s for k, (s, _) in ref.items()}
    for k, v in back.items():
        if not k.startswith(DROPPED_PREFIXES):
            assert torch.equal(v, sd[k]), k
    # its STFT kernels and filterbank are what torchlibrosa computes: check against our own front end
    x = torch.randn(1, 48000)
    real = torch.nn.functional.conv1d(
        torch.nn.functional.pad(x[:, None], (512, 512), mode="reflect"),
        back["audio_branch.spectrogram_extractor.stft.conv_real.weight"],
        stride=480,
    )
    imag = torch.nn.functional.conv1d(
        torch.nn.functional.pad(x[:, None], (512, 512), mode="reflect"),
        back["audio_branch.spectrogram_extractor.stft.conv_imag.weight"],
        stride=480,
    )
    power = (real**2 + imag**2).transpose(1, 2)  # [1, frames, 513]
    logmel = 10 * torch.log10((power @ back["audio_branch.logmel_extractor.melW"]).clamp(min=1e-10))
    torch.testing.assert_close(logmel, model.frontend(x), atol=2e-3, rtol=0)


def test_untrusted_pickle_in_a_laion_style_file_is_refused(tmp_path):
    from clap_train.checkpoints.load import UntrustedCheckpoint

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"epoch": 1, "state_dict": {"module.logit_scale_a": torch.tensor(1.0)}, "x": Evil()}, tmp_path / "e.pt")
    with pytest.raises(UntrustedCheckpoint, match="trust_checkpoint"):
        load_model(str(tmp_path / "e.pt"))
    assert not os.path.exists(marker)


@pytest.mark.parametrize("name", ["tiny", "base", "large"])
def test_tower_size_detected_from_keys(name):
    from clap_train.audio.htsat import build_htsat

    with torch.device("meta"):
        enc = build_htsat(name, fusion=name == "base")
    sd = {"audio_branch." + k: v for k, v in enc.state_dict().items()}
    cfg = laion.audio_config(sd)
    assert cfg["name"] == name and cfg["fusion"] == (name == "base") and cfg["spec_size"] == 256
