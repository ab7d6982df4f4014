import json
import os

from clap_train.cli import main


def test_check_data_ok_and_cannot_train(synth_root, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["check-data", f"{synth_root}/sentences/valid", "--json", str(out)]) == 0
    rep = json.load(open(out))
    assert rep["good"] == 24 and rep["sample_rates"] == {"32000": 24} and rep["json_fields"]["text"] == 24
    assert "OK" in capsys.readouterr().out
    # tag-only data without templates: no captions, cannot train
    assert main(["check-data", f"{synth_root}/tags/valid"]) == 1
    assert "CANNOT TRAIN" in capsys.readouterr().out
    assert main(["check-data", f"{synth_root}/tags/valid", "--tag-template", "{}"]) == 0
    assert main(["check-data", str(tmp_path / "nothing")]) == 1


def test_export_command_converts_between_formats(tmp_path, capsys):
    """LAION .pt -> Hugging Face dir -> ours -> LAION .pt: the weights survive every hop bit for bit."""
    import torch

    from clap_train.checkpoints.load import load_model
    from tests.checkpoints.conftest import make_roberta_dir, small_model

    tok = make_roberta_dir(tmp_path / "tok")
    model = small_model(tok, fusion=True)
    from clap_train.checkpoints.export import save_laion

    save_laion(model, str(tmp_path / "a.pt"))
    assert main(["export", str(tmp_path / "a.pt"), str(tmp_path / "hf"), "--format", "hf", "--tokenizer", tok]) == 0
    assert main(["export", str(tmp_path / "hf"), str(tmp_path / "b.ckpt"), "--format", "ours"]) == 0
    assert main(["export", str(tmp_path / "b.ckpt"), str(tmp_path / "c.pt"), "--format", "laion"]) == 0
    a = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    c = torch.load(tmp_path / "c.pt", weights_only=True)["state_dict"]
    assert a.keys() == c.keys() and all(torch.equal(a[k], c[k]) for k in a)
    b = load_model(str(tmp_path / "b.ckpt"))
    assert all(torch.equal(x, y) for x, y in zip(b.state_dict().values(), model.state_dict().values()))
    assert "wrote" in capsys.readouterr().out


def test_export_refusal_is_a_clear_error(tmp_path, capsys):
    from clap_train.checkpoints.export import save_ours
    from clap_train.model import build_model
    from tests.test_model import CFG

    save_ours(build_model(CFG), str(tmp_path / "pann.ckpt"))
    assert main(["export", str(tmp_path / "pann.ckpt"), str(tmp_path / "hf"), "--format", "hf"]) == 2
    assert "cannot export to transformers' ClapModel: audio tower" in capsys.readouterr().err
    # a mean-pooled BERT in LAION's layout would be read through a pooler it does not have: refused
    assert main(["export", str(tmp_path / "pann.ckpt"), str(tmp_path / "x.pt"), "--format", "laion"]) == 2
    err = capsys.readouterr().err
    assert "cannot export to LAION-CLAP's layout" in err and "with mean pooling" in err and "\n" not in err.strip()
    assert not os.path.exists(tmp_path / "x.pt")


def test_a_cut_short_or_foreign_checkpoint_is_one_line_exit_2(small_ckpt, tmp_path, capsys):
    data = open(small_ckpt, "rb").read()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    other = tmp_path / "notes.ckpt"
    other.write_text("hello\n")
    for path in (cut, other):
        embed = ["embed", "--checkpoint", str(path), "--text", "a dog", "--out", str(tmp_path / "e.npy")]
        for args in (embed, ["export", str(path), str(tmp_path / "x"), "--format", "hf"]):
            assert main(args) == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith(f"error: {path} is not a readable checkpoint") and "\n" not in err, err


def test_every_option_has_help_and_shows_its_default(capsys):
    import argparse

    import pytest

    from clap_train.cli import COMMANDS

    for (name, _), add_args, _ in COMMANDS:
        p = argparse.ArgumentParser()
        add_args(p)
        assert not [a.dest for a in p._actions if not a.help], name
    with pytest.raises(SystemExit):
        main(["retrieve", "--help"])
    out = capsys.readouterr().out
    assert "results per query (default: 10)" in out and "(default: cpu)" in out and "(default: None)" not in out
