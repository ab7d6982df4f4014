"""A RoBERTa text tower that needs no download: a config beside a byte-level BPE tokenizer trained here on a
few captions. For checks on machines without the hub (the GPU check) and for tests."""

CORPUS = [
    "a dog barks twice",
    "a cat meows",
    "rain falls on a tin roof",
    "an engine idles then revs",
    "birds sing in the morning",
    "a door slams shut",
    "This is a sound of a dog.",
    "people talking",
] * 4


def make_roberta_dir(path, hidden=32, layers=2, heads=2, max_positions=80, vocab_size=None, intermediate=None) -> str:
    """RobertaConfig (random weights when built with pretrained=false) + its tokenizer files in `path`; a
    vocab_size larger than the trained tokenizer's gives RoBERTa-base's embedding size."""
    from pathlib import Path

    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaTokenizerFast

    path = Path(path)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        CORPUS, vocab_size=400, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    path.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(path))
    tok = RobertaTokenizerFast(vocab_file=str(path / "vocab.json"), merges_file=str(path / "merges.txt"))
    tok.save_pretrained(str(path))
    RobertaConfig(
        vocab_size=vocab_size or len(tok),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate or hidden * 2,
        max_position_embeddings=max_positions,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    ).save_pretrained(str(path))
    return str(path)


def make_roberta_base_dir(path, layers: int = 12) -> str:
    """RoBERTa-base's shape (hidden 768, 12 heads, its 50265-token embedding) with random weights: what the
    speed checks time, so they measure the real text tower without a download."""
    return make_roberta_dir(
        path, hidden=768, layers=layers, heads=12, max_positions=514, vocab_size=50265, intermediate=3072
    )
