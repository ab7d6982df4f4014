"""Secrets never reach saved configs, checkpoints or logs."""

import glob
import os

from clap_train.secrets import MASK, redact

KEY, TOKEN = "wandb-sekrit-0123456789", "hf_tok3n_abcdefghij"


def test_redact_keys_and_values(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    out = redact(
        {
            "logger": {"api_key": "x" * 10, "name": "run"},
            "note": f"token is {KEY}",
            "list": [{"hf_token": "abc"}],
            "empty_token": None,
        }
    )
    assert out == {
        "logger": {"api_key": MASK, "name": "run"},
        "note": f"token is {MASK}",
        "list": [{"hf_token": MASK}],
        "empty_token": None,
    }


def test_run_leaves_no_secret_anywhere(tmp_path, data_root, monkeypatch, capfd):
    from clap_train.run import run
    from tests.e2e.conftest import compose_cfg

    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    cfg = compose_cfg(
        tmp_path,
        [
            "+notes.api_key=${oc.env:WANDB_API_KEY}",
            f"+notes.comment=uses {TOKEN}",
            "logger=many",
            "test_after_fit=false",
        ],
        data_root,
    )
    res = run(cfg)
    out, err = capfd.readouterr()
    assert KEY not in out + err and TOKEN not in out + err
    files = [f for f in glob.glob(os.path.join(res["run_dir"], "**", "*"), recursive=True) if os.path.isfile(f)]
    assert any(f.endswith(".ckpt") for f in files) and any(f.endswith("config.yaml") for f in files)
    for f in files:
        data = open(f, "rb").read()
        assert KEY.encode() not in data and TOKEN.encode() not in data, f
    assert MASK in open(os.path.join(res["run_dir"], "config.yaml")).read()
