"""Evaluation outputs collected batch by batch on each rank, gathered once at the end (every rank's
features to every rank, each clip kept once: a distributed sampler may repeat clips to even out ranks)."""

from __future__ import annotations

import torch

from clap_train.distributed import gather_objects
from clap_train.eval.metrics import source_metrics

FIELDS = ("keys", "audio", "text", "owner", "tags", "captions")


class EvalAccumulator:
    def __init__(self):
        self.store: dict[str, dict] = {}

    def add(self, batch: dict, audio: torch.Tensor, text: torch.Tensor) -> None:
        """One eval batch (of one source) and its normalised embeddings, kept on the CPU in fp32."""
        st = self.store.setdefault(batch["source"][0], {f: [] for f in FIELDS})
        offset = len(st["keys"])
        st["keys"] += batch["key"]
        st["tags"] += batch["tags"]
        st["captions"] += batch["captions"]
        st["audio"].append(audio.float().cpu())
        st["text"].append(text.float().cpu())
        st["owner"].append(batch["caption_owner"].cpu() + offset)

    def finish(self, sources: list[str], dim: int, classes_by_source: dict, embed_classes, stage: str):
        """Metrics per source (and their mean) and the gathered arrays the pictures are drawn from. Every
        rank must call this with the same `sources` (the gather is a collective), also a rank that saw no
        batch of some source; `embed_classes(classes)` gives the prompt prototypes [C, D]."""
        store, self.store = self.store, {}
        results: dict[str, dict[str, float]] = {}
        arrays: dict[str, dict] = {}
        prototypes: dict[tuple, torch.Tensor] = {}  # sources sharing a class list encode its prompts once
        for src in sorted(set(sources) | set(store)):
            keys, audio, text, owner, tags, captions = gather_dedup(
                store.get(src), dim, f"the {stage} outputs of {src}"
            )
            if not keys:
                continue
            classes = classes_by_source.get(src)
            if classes and tuple(classes) not in prototypes:
                prototypes[tuple(classes)] = embed_classes(classes)
            protos = prototypes.get(tuple(classes or ()))
            results[src], labels = source_metrics(audio, text, owner, tags, classes, protos)
            arrays[src] = {"keys": keys, "audio": audio, "text": text, "owner": owner, "captions": captions}
            if classes:
                arrays[src].update(classes=list(classes), prototypes=protos, labels=labels)
        if results:
            shared = set.intersection(*(set(m) for m in results.values()))
            results["mean"] = {k: sum(r[k] for r in results.values()) / len(results) for k in shared}
        return results, arrays


def gather_dedup(st: dict | None, dim: int, what: str):
    """Concatenate this rank's outputs of one source (None: it had no batches), gather every rank's, keep
    each sample key once."""
    if st:
        local = (
            st["keys"],
            torch.cat(st["audio"]),
            torch.cat(st["text"]),
            torch.cat(st["owner"]),
            st["tags"],
            st["captions"],
        )
    else:
        local = ([], torch.zeros(0, dim), torch.zeros(0, dim), torch.zeros(0, dtype=torch.long), [], [])
    keys, A, T, O, tags, caps, seen = [], [], [], [], [], [], set()
    for k_list, a, t, o, tg, cp in gather_objects(local, what):
        for i, k in enumerate(k_list):
            if k in seen:
                continue
            seen.add(k)
            new = len(keys)
            keys.append(k)
            tags.append(tg[i])
            A.append(a[i])
            sel = (o == i).nonzero().flatten()
            T.append(t[sel])
            caps += [cp[j] for j in sel.tolist()]
            O.append(torch.full((len(sel),), new, dtype=torch.long))
    if not keys:
        return [], None, None, None, [], []
    return keys, torch.stack(A), torch.cat(T), torch.cat(O), tags, caps
