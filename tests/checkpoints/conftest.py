"""A tiny RoBERTa (byte-level BPE trained here, random weights) and small HTS-AT CLAP configs in the
real geometry (48 kHz, 64 mels, 10 s -> 256x256), so transformers' ClapModel can be the reference offline."""

import math
import os

import pytest
import torch

from clap_train.testing import SMALL_HTSAT, clap_cfg
from clap_train.text.offline import make_roberta_dir  # noqa: F401  (tests import it from here)


@pytest.fixture(scope="session")
def roberta_dir(tmp_path_factory):
    return make_roberta_dir(tmp_path_factory.mktemp("roberta"))


def small_cfg(roberta_dir: str, fusion: bool = False, **audio) -> dict:
    return clap_cfg(
        roberta_dir,
        {**SMALL_HTSAT, "fusion": fusion, **audio},
        embed_dim=24,
        logit_scale_init=1 / 0.07,
        logit_scale_max=100.0,
        mask_padding=False,
    )


def small_model(roberta_dir: str, fusion: bool = False, seed: int = 0):
    """Random weights, with BatchNorm statistics moved off their init so the mapping of buffers is tested."""
    from clap_train.model import build_model

    torch.manual_seed(seed)
    m = build_model(small_cfg(roberta_dir, fusion))
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.normal_(0, 3.0)
            mod.running_var.uniform_(5.0, 50.0)
            mod.weight.data.normal_(1.0, 0.2)
            mod.bias.data.normal_(0.0, 0.2)
    for name, p in m.named_parameters():
        if "relative_position_bias_table" in name:
            p.data.normal_(0, 0.5)
    return m.eval()


def waveforms(seconds=(10.0, 3.0, 14.0), sr=48000, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in seconds:
        n = int(s * sr)
        t = torch.arange(n) / sr
        f = 200 + 2000 * torch.rand((), generator=g)
        out.append((0.3 * torch.sin(2 * torch.pi * f * t) + 0.05 * torch.randn(n, generator=g)).float())
    return out


# LAION-CLAP's key lists (shared/reference/, copied here so a fresh clone has them)
REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference")
TSV = "laion_clap_htsat_tiny_roberta_state_dict.tsv"
FUSION_TSV = "laion_clap_htsat_tiny_fusion_extra_keys.tsv"


def reference_keys(name: str = TSV) -> dict[str, tuple]:
    """key -> (shape, dtype) from the reference key lists."""
    out = {}
    path = os.path.join(REFERENCE, name)
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        shape = tuple(int(x) for x in parts[1].strip("()").split(",") if x.strip())
        dtype = (
            parts[2] if len(parts) > 2 else ("torch.int64" if "num_batches_tracked" in parts[0] else "torch.float32")
        )
        out[parts[0]] = (shape, getattr(torch, dtype.split(".")[-1]))
    return out


def laion_state(fusion: bool = False, meta: bool = False, seed: int = 0) -> dict:
    """A state_dict with every key and shape of a released LAION-CLAP HTS-AT-tiny + RoBERTa checkpoint,
    random weights, derived buffers as LAION computes them, and the `position_ids` released files carry."""
    from clap_train.audio.htsat import relative_position_index, shift_mask

    keys = reference_keys()
    if fusion:
        keys.update(reference_keys(FUSION_TSV))
    keys["text_branch.embeddings.position_ids"] = ((1, 514), torch.int64)
    from clap_train.audio.frontend import mel_filterbank
    from clap_train.checkpoints.laion import _conv_dft

    real, imag = _conv_dft(1024, 1024)
    derived = {
        "audio_branch.spectrogram_extractor.stft.conv_real.weight": real,
        "audio_branch.spectrogram_extractor.stft.conv_imag.weight": imag,
        "audio_branch.logmel_extractor.melW": mel_filterbank(48000, 1024, 64, 50.0, 14000.0).T.contiguous(),
    }
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, (shape, dtype) in keys.items():
        if meta:
            sd[k] = torch.empty(shape, dtype=dtype, device="meta")
        elif k in derived:
            sd[k] = derived[k]
        elif k.endswith("relative_position_index"):
            sd[k] = relative_position_index(math.isqrt(shape[0]))
        elif k.endswith("attn_mask"):
            nw, n = shape[0], math.isqrt(shape[1])
            res = math.isqrt(nw) * n
            sd[k] = shift_mask(res, res, n, n // 2)
        elif k.endswith("position_ids"):
            sd[k] = torch.arange(shape[1])[None]
        elif k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(1000)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) * 20 + 1
        elif "norm" in k.lower() and k.endswith("weight") or k.endswith("bn0.weight"):
            sd[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            sd[k] = 0.02 * torch.randn(shape, generator=g)
    return sd


def released_file(path, sd: dict) -> str:
    """Wrap a state_dict as LAION releases it: {epoch, name, state_dict (module.), optimizer} + numpy scalars."""
    import numpy as np

    torch.save(
        {
            "epoch": np.int64(45),
            "name": "2022_laion_630k",
            "state_dict": {"module." + k: v for k, v in sd.items()},
            "optimizer": {"state": {}, "param_groups": [{"lr": np.float64(1e-4), "params": [0, 1]}]},
        },
        str(path),
    )
    return str(path)
