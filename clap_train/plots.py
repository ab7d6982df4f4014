"""Pictures people look at: the audio-text similarity heatmap and the zero-shot confusion matrix.

matplotlib's object API with the Agg canvas (no pyplot global state, no display needed); each function
returns the PNG bytes and, given a path, writes them atomically.
"""

from __future__ import annotations

import io

import numpy as np

from clap_train.atomic import write_atomic


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig, path: str | None) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    if path:
        write_atomic(path, data)
    return data


def _short(s: str, n: int = 40) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def similarity_heatmap(sim: np.ndarray, rows: list[str], cols: list[str], title: str, path: str | None = None) -> bytes:
    """sim [R, C] cosine similarities (clip i against caption j; the diagonal holds the matching pairs)."""
    r, c = sim.shape
    fig = _figure(2.5 + 0.32 * c, 1.8 + 0.3 * r)
    ax = fig.add_subplot()
    im = ax.imshow(sim, cmap="viridis", aspect="auto")
    ax.set_xticks(range(c), [_short(x) for x in cols], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(r), [_short(x, 24) for x in rows], fontsize=7)
    for i in range(min(r, c)):  # outline the matching pairs
        ax.add_patch(_rect(i))
    ax.set_xlabel("caption")
    ax.set_ylabel("audio clip")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8, label="cosine similarity")
    return _png(fig, path)


def _rect(i: int):
    from matplotlib.patches import Rectangle

    return Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=1.0)


def confusion_matrix_png(cm: np.ndarray, classes: list[str], title: str, path: str | None = None) -> bytes:
    """cm [C, C] counts (row = true class, column = predicted); cells show row-normalised rates."""
    cm = np.asarray(cm, dtype=np.float64)
    rate = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(classes)
    size = 2.5 + 0.35 * n
    fig = _figure(size + 1.0, size)
    ax = fig.add_subplot()
    im = ax.imshow(rate, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), [_short(c, 24) for c in classes], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), [_short(c, 24) for c in classes], fontsize=7)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{int(cm[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if rate[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class")
    return _png(fig, path)


def zeroshot_confusion_png(audio, prototypes, labels, classes: list[str], path: str, title: str = "zero-shot") -> bytes:
    """The confusion matrix of prompt-similarity classification (labels -1 ignored), titled with its top-1."""
    from clap_train.eval.zeroshot import confusion_matrix

    cm = confusion_matrix(audio, prototypes, labels).numpy()
    top1 = cm.trace() / max(cm.sum(), 1)
    return confusion_matrix_png(cm, classes, f"{title} confusion (top-1 {top1:.1%}, n={int(cm.sum())})", path)
