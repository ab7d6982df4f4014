"""Measure parity with transformers' ClapModel / ClapFeatureExtractor (offline, random small weights).

    python scripts/parity_hf.py [--json OUT]

Builds our HTS-AT CLAP in the real input geometry (48 kHz, 64 mels, 10 s -> 256x256) with small widths,
exports it to a ClapModel directory, and prints the largest absolute differences between the two on
the same texts and waveforms (unfused and fused; the fused long clip with transformers' random crop
draws replayed on our side), plus the log-mel front-end difference in dB and the round-trip check.
The tests (tests/checkpoints/test_hf.py) assert the same quantities against ≤1e-5.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel
    from transformers.utils import logging as hf_logging

    from clap_train.audio.fusion import fuse_mel
    from clap_train.checkpoints import hf
    from clap_train.checkpoints.load import load_model
    from tests.checkpoints.conftest import make_roberta_dir, small_model, waveforms

    hf_logging.set_verbosity_error()
    texts = ["a dog barks twice", "rain falls on a tin roof", "a cat"]
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        tok_dir = make_roberta_dir(Path(d) / "tok")
        for fusion in (False, True):
            tag = "fused" if fusion else "unfused"
            ours = small_model(tok_dir, fusion)
            out = os.path.join(d, tag)
            hf.export(ours, out)
            ref = ClapModel.from_pretrained(out).eval()
            fe, tok = ClapFeatureExtractor.from_pretrained(out), AutoTokenizer.from_pretrained(out)
            with torch.no_grad():
                t_ref = ref.get_text_features(**tok(texts, padding=True, return_tensors="pt")).pooler_output
                rows[f"{tag}: text embedding"] = (ours.encode_text(texts) - t_ref).abs().max().item()
                clips = waveforms((10.0, 3.0, 14.0))
                np.random.seed(7)
                inp = fe([c.numpy() for c in clips], sampling_rate=48000, return_tensors="pt")
                a_ref = ref.get_audio_features(**inp).pooler_output
                a = ours.encode_audio(clips)
                rows[f"{tag}: audio embedding, 10 s and 3 s clips"] = (a[:2] - a_ref[:2]).abs().max().item()
                mel = ours.frontend(clips[0][None])[0]
                rows[f"{tag}: log-mel vs ClapFeatureExtractor (dB)"] = (
                    (mel - inp["input_features"][0, 0].float()).abs().max().item()
                )
                if fusion:
                    np.random.seed(7)
                    full = ours.frontend(clips[2][None])[0]
                    starts = [int(np.random.choice(r)) for r in np.array_split(list(range(full.shape[0] - 1000)), 3)]
                    x = fuse_mel(full, 1001, starts)
                    rows["fused: 4-channel fusion input vs extractor (dB)"] = (
                        (x - inp["input_features"][2].float()).abs().max().item()
                    )
                    frames = ours.audio_branch.forward_frames(x[None], torch.tensor([True]))
                    e = F.normalize(ours.audio_projection(ours.pooling(frames, None)), dim=-1)
                    rows["fused: audio embedding, 14 s clip (crops replayed)"] = (e - a_ref[2:]).abs().max().item()
            back = load_model(out)
            same = all(torch.equal(x, y) for x, y in zip(back.state_dict().values(), ours.state_dict().values()))
            rows[f"{tag}: round trip ours -> HF -> ours, max diff"] = 0.0 if same else float("nan")
    width = max(map(len, rows))
    for k, v in rows.items():
        print(f"{k:<{width}}  {v:.3g}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
