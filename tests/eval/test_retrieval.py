import torch
import torch.nn.functional as F

from clap_train.eval.retrieval import retrieval_metrics


def naive(audio, text, owner):
    sim = (text @ audio.T).tolist()
    n, m = audio.shape[0], text.shape[0]
    t2a = []
    for j in range(m):
        order = sorted(range(n), key=lambda i: -sim[j][i])
        t2a.append(order.index(owner[j]))
    a2t_best, ap = [], []
    for i in range(n):
        order = sorted(range(m), key=lambda j: -sim[j][i])
        ranks = sorted(order.index(j) for j in range(m) if owner[j] == i)
        a2t_best.append(ranks[0])
        hits = [r for r in ranks if r < 10]
        ap.append(sum((k + 1) / (r + 1) for k, r in enumerate(hits)) / len(hits) if hits else 0.0)
    out = {}
    for k in (1, 5, 10):
        out[f"t2a_R@{k}"] = sum(r < k for r in t2a) / m
        out[f"a2t_R@{k}"] = sum(r < k for r in a2t_best) / n
    out["t2a_mAP@10"] = sum(1 / (r + 1) if r < 10 else 0 for r in t2a) / m
    out["a2t_mAP@10"] = sum(ap) / n
    return out


def test_against_naive_with_variable_caption_counts():
    g = torch.Generator().manual_seed(1)
    n = 23
    owner = torch.tensor([i for i in range(n) for _ in range(1 + i % 5)])
    audio = F.normalize(torch.randn(n, 8, generator=g, dtype=torch.float64), dim=-1)
    text = F.normalize(audio[owner] + 0.9 * torch.randn(len(owner), 8, generator=g, dtype=torch.float64), dim=-1)
    got, want = retrieval_metrics(audio, text, owner), naive(audio, text, owner.tolist())
    for k, v in want.items():
        assert abs(got[k] - v) < 1e-6, k
    assert 0 < got["t2a_R@1"] < 1  # the fixture is neither trivial nor hopeless


def test_perfect_embeddings_score_one():
    audio = torch.eye(6)
    owner = torch.tensor([0, 0, 1, 2, 3, 4, 5, 5, 5])
    m = retrieval_metrics(audio, audio[owner], owner)
    assert all(m[k] == 1.0 for k in ("t2a_R@1", "a2t_R@1", "t2a_mAP@10", "a2t_mAP@10"))
