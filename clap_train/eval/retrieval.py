"""Audio-text retrieval metrics under the multi-caption protocol (as LAION-CLAP reports them).

text->audio: every caption is a query; its one relevant item is the clip it describes.
audio->text: R@k counts the best-ranked of the clip's captions; mAP@10 follows LAION-CLAP: the 0-based
ranks of the clip's captions that fall in the top 10, sorted, give AP = mean((i+1) / (rank_i+1)).
Ranks are 0-based: items scored higher, plus equal-scored items earlier in the list (ties broken by
index, as a stable sort would), so a clip's captions always hold distinct ranks.
"""

from __future__ import annotations

import torch

KS = (1, 5, 10)
METRICS = (
    *(f"{d}_R@{k}" for k in KS for d in ("t2a", "a2t")),
    "t2a_mAP@10",
    "a2t_mAP@10",
    "t2a_mean_rank",
    "a2t_mean_rank",
)  # what retrieval_metrics returns


def retrieval_metrics(audio: torch.Tensor, text: torch.Tensor, owner: torch.Tensor) -> dict[str, float]:
    """audio [N, D], text [M, D] (both L2-normalised), owner [M]: the clip each caption describes."""
    audio, text, owner = audio.float(), text.float(), owner.long()
    sim = text @ audio.T  # [M, N]
    m_idx, n_idx = torch.arange(text.shape[0]), torch.arange(audio.shape[0])
    pos = sim.gather(1, owner[:, None])  # [M, 1]
    t2a_rank = ((sim > pos) | ((sim == pos) & (n_idx[None] < owner[:, None]))).sum(1)  # [M]
    # audio->text: rank of each caption among all captions for its own clip
    sim_a = sim.T  # [N, M]
    own = sim_a[owner, m_idx][:, None]  # [M, 1] score of caption j for its clip
    row = sim_a[owner]  # [M, M] its clip's scores of every caption
    a2t_cap_rank = ((row > own) | ((row == own) & (m_idx[None] < m_idx[:, None]))).sum(1)  # [M]
    n = audio.shape[0]
    best = torch.full((n,), torch.iinfo(torch.long).max, dtype=torch.long)
    best = best.scatter_reduce(0, owner, a2t_cap_rank, reduce="amin")
    out: dict[str, float] = {}
    for k in KS:
        out[f"t2a_R@{k}"] = (t2a_rank < k).float().mean().item()
        out[f"a2t_R@{k}"] = (best < k).float().mean().item()
    out["t2a_mAP@10"] = torch.where(t2a_rank < 10, 1.0 / (t2a_rank + 1).float(), 0.0).mean().item()
    ap = torch.zeros(n)
    for i in range(n):
        r = torch.sort(a2t_cap_rank[owner == i]).values
        r = r[r < 10]
        if len(r):
            ap[i] = (torch.arange(1, len(r) + 1) / (r + 1).float()).mean()
    out["a2t_mAP@10"] = ap.mean().item()
    out["t2a_mean_rank"] = (t2a_rank.float() + 1).mean().item()
    out["a2t_mean_rank"] = (best.float() + 1).mean().item()
    return out


def paired_similarity(audio: torch.Tensor, text: torch.Tensor, owner: torch.Tensor, n: int = 16):
    """The first `n` clips against each one's first caption: (sim [n, n], clip indices, caption indices);
    the diagonal holds the true pairs (what the similarity heatmap shows)."""
    clips = torch.unique(owner)[:n]  # sorted: the first clips in evaluation order
    first = torch.stack([(owner == c).nonzero()[0, 0] for c in clips])
    return (audio[clips].float() @ text[first].float().T), clips, first
