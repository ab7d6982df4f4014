import json

import numpy as np
import torch

from clap_train.cli import main
from clap_train.data.audio_files import ReadSpec, read_audio_file
from clap_train.tools.retrieve import load_embeddings, search


def retrieve(ckpt, *args) -> int:
    return main(["retrieve", "--checkpoint", ckpt, *args])


def test_embed_then_retrieve_from_saved_embeddings(small_ckpt, small_model, messy_dir, tmp_path, capsys):
    src, info = messy_dir
    npy = str(tmp_path / "emb" / "audio.npy")
    assert main(["embed", "--checkpoint", small_ckpt, "--audio", src, "--out", npy, "--batch-size", "4"]) == 0
    assert "skipped bell/broken.wav: corrupt_audio" in capsys.readouterr().out
    emb, rows = load_embeddings(npy)
    assert np.load(npy).dtype == np.float32 and emb.shape == (len(rows), 16) and "bell/broken.wav" not in rows
    one = read_audio_file(f"{src}/{rows[3]}", ReadSpec(sample_rate=16000, min_seconds=0))[0]
    assert torch.allclose(emb[3], small_model.encode_audio([one], sample_rate=16000)[0], atol=1e-5)
    # ranking from the .npy equals ranking from the folder
    a = search(small_model, [npy], ["a bell rings", "a drum"], k=5)
    b = search(small_model, [src], ["a bell rings", "a drum"], k=5)
    assert a["queries"] == b["queries"] and len(a["queries"][0]["results"]) == 5
    scores = (small_model.encode_text(["a drum"]) @ emb.T)[0]
    assert a["queries"][1]["results"][0]["item"] == rows[int(scores.argmax())]
    assert retrieve(small_ckpt, "--audio", npy, "--query", "a drum", "-k", "3", "--json", str(tmp_path / "r.json")) == 0
    assert json.load(open(tmp_path / "r.json"))["queries"][0]["results"] == a["queries"][1]["results"][:3]


def test_text_embeddings_and_audio_to_text(small_ckpt, small_model, messy_dir, tmp_path, capsys):
    src, info = messy_dir
    npy = str(tmp_path / "t.npy")
    assert main(["embed", "--checkpoint", small_ckpt, "--text", "a bell", "a drum", "--out", npy]) == 0
    emb, rows = load_embeddings(npy)
    assert rows == ["a bell", "a drum"] and torch.allclose(emb, small_model.encode_text(rows), atol=1e-6)
    capsys.readouterr()
    caps = tmp_path / "caps.txt"
    caps.write_text("a bell rings\n\na whistle blows\na drum is hit\n")
    assert retrieve(small_ckpt, "--audio", f"{src}/{info['good'][0]}", "--captions", str(caps), "-k", "2") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == info["good"][0].split("/")[-1] and out.count(". ") == 2


def test_unknown_direction_names_the_choices(small_model, messy_dir):
    import pytest

    with pytest.raises(ValueError, match=r"direction='sideways'; valid choices: text->audio, audio->text"):
        search(small_model, [messy_dir[0]], ["a bell"], direction="sideways")
