"""Parity with transformers' ClapModel (the numerical reference, built offline from a ClapConfig) and
round trips through its directory format."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clap_train.audio.fusion import crop_ranges, fuse_mel
from clap_train.checkpoints import hf
from clap_train.checkpoints.load import load_model
from tests.checkpoints.conftest import small_model, waveforms

TEXTS = ["a dog barks twice", "rain falls on a tin roof", "a cat"]


@pytest.fixture(scope="module", params=[False, True], ids=["unfused", "fused"])
def exported(request, roberta_dir, tmp_path_factory):
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    fusion = request.param
    ours = small_model(roberta_dir, fusion)
    out = tmp_path_factory.mktemp("hf_fused" if fusion else "hf_unfused")
    hf.export(ours, str(out))
    ref = ClapModel.from_pretrained(str(out)).eval()
    return (
        fusion,
        ours,
        ref,
        ClapFeatureExtractor.from_pretrained(str(out)),
        AutoTokenizer.from_pretrained(str(out)),
        out,
    )


def test_text_embeddings_match(exported):
    _, ours, ref, _, tok, _ = exported
    with torch.no_grad():
        want = ref.get_text_features(**tok(TEXTS, padding=True, return_tensors="pt")).pooler_output
    assert (ours.encode_text(TEXTS) - want).abs().max() <= 1e-5


def test_audio_embeddings_match_from_waveforms(exported):
    """Same waveforms through each side's own front end: 10 s, 3 s (repeat-padded); the fused model also
    gets a 14 s clip, with transformers' random crop choice replayed on our side."""
    fusion, ours, ref, fe, _, _ = exported
    clips = waveforms((10.0, 3.0, 14.0) if fusion else (10.0, 3.0))
    np.random.seed(7)
    inp = fe([c.numpy() for c in clips], sampling_rate=48000, return_tensors="pt")
    with torch.no_grad():
        want = ref.get_audio_features(**inp).pooler_output
    got = ours.encode_audio(clips)
    if not fusion:
        assert (got - want).abs().max() <= 1e-5
        return
    assert inp["is_longer"].view(-1).tolist() == [False, False, True]
    assert (got[:2] - want[:2]).abs().max() <= 1e-5
    # the long clip: our evaluation crops are fixed (middle of each third), transformers' random; replay its
    # draws and compare the fusion input (front-end parity) and then the embedding from it.
    np.random.seed(7)
    mel = ours.frontend(clips[2][None])[0]
    ranges = np.array_split(list(range(0, mel.shape[0] - 1001 + 1)), 3)
    assert [(int(r[0]), int(r[-1])) for r in ranges] == crop_ranges(mel.shape[0], 1001)
    starts = [int(np.random.choice(r)) for r in ranges]
    fused = fuse_mel(mel, 1001, starts)
    assert (fused - inp["input_features"][2].float()).abs().max() < 2e-3  # dB; float32 vs float64 STFT
    with torch.no_grad():
        frames = ours.audio_branch.forward_frames(fused[None], torch.tensor([True]))
        emb = F.normalize(ours.audio_projection(ours.pooling(frames, None)), dim=-1)
    assert (emb - want[2:]).abs().max() <= 1e-5


def test_audio_embeddings_match_at_mel_input(exported):
    """Identical input features (including is_longer as given) -> identical embeddings."""
    fusion, ours, ref, _, _, _ = exported
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4 if fusion else 1, 1001, 64, generator=g) * 10 - 40
    longer = torch.tensor([True, False, True])
    with torch.no_grad():
        want = ref.get_audio_features(input_features=x, is_longer=longer[:, None]).pooler_output
        frames = ours.audio_branch.forward_frames(x if fusion else x[:, 0], longer)
        got = F.normalize(ours.audio_projection(ours.pooling(frames, None)), dim=-1)
    assert (got - want).abs().max() <= 1e-5


def test_round_trip_ours_hf_ours_is_exact(exported):
    fusion, ours, _, _, _, out = exported
    back = load_model(str(out))
    a, b = ours.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert back.audio_branch.fusion == fusion
    assert back.frontend.mel_scale == ("htk" if fusion else "slaney")
    assert torch.equal(back.encode_text(TEXTS), ours.encode_text(TEXTS))


def test_key_mapping_inverts(roberta_dir):
    sd = small_model(roberta_dir, True).state_dict()
    back, dropped = hf.from_hf(hf.to_hf(sd))
    assert not dropped and back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)


def test_export_refuses_what_clapmodel_cannot_hold(tmp_path):
    from clap_train.model import build_model
    from tests.test_model import CFG

    with pytest.raises(ValueError, match="cannot export to transformers' ClapModel: audio tower"):
        hf.export(build_model(CFG), str(tmp_path / "x"))


def test_hub_id_without_network_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="network"):
        load_model("laion/clap-htsat-unfused")


def test_init_from_an_hf_directory_loads_every_tensor(exported, roberta_dir):
    from clap_train.checkpoints.load import init_weights

    fusion, ours, _, _, _, out = exported
    fresh = small_model(roberta_dir, fusion, seed=5)
    logs = []
    init_weights(fresh, str(out), log=logs.append)
    assert "(hf): loaded" in logs[0] and "missing 0, unexpected 0, shape mismatch 0" in logs[0]
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), ours.state_dict().values()))


def test_rand_trunc_front_end_matches_the_feature_extractor(roberta_dir, tmp_path):
    """Unfused extractor on a long clip: a random 10 s crop; replay its draw, compare log-mels."""
    from transformers import ClapFeatureExtractor

    ours = small_model(roberta_dir, False)
    fe = ClapFeatureExtractor(**hf.feature_extractor(ours).to_dict())
    assert fe.truncation == "rand_trunc"
    clip = waveforms((12.5,), seed=3)[0]
    np.random.seed(11)
    inp = fe([clip.numpy()], sampling_rate=48000, return_tensors="pt")
    np.random.seed(11)
    start = np.random.randint(0, len(clip) - 480000 + 1)
    mel = ours.frontend(clip[None, start : start + 480000])[0]
    assert (mel - inp["input_features"][0, 0].float()).abs().max() < 2e-3
