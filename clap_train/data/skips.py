"""Counting what the data pipeline skips, by reason, with rate-limited warnings."""

from __future__ import annotations

import logging
import time
from collections import Counter

log = logging.getLogger("clap_train.data")


class BadSample(Exception):
    """A sample (or member, or shard) that cannot be used; `reason` is a short metric-safe tag."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class SkipCounter:
    """Counts skips by reason. Warnings are rate-limited per reason so a bad shard cannot flood logs.

    `muted` is set while a resumed stream fast-forwards over data it already counted.
    """

    def __init__(self, warn_every_s: float = 30.0):
        self.counts: Counter[str] = Counter()
        self.warn_every_s = warn_every_s
        self._last_warn: dict[str, float] = {}
        self.muted = False

    def skip(self, reason: str, where: str = "", detail: str = "") -> None:
        if self.muted:
            return
        self.counts[reason] += 1
        now = time.monotonic()
        if now - self._last_warn.get(reason, -1e9) >= self.warn_every_s:
            self._last_warn[reason] = now
            log.warning("skipped (%s) %s %s [%d so far]", reason, where, detail, self.counts[reason])

    def state(self) -> dict[str, int]:
        return dict(self.counts)

    def load(self, state: dict[str, int] | None) -> None:
        self.counts = Counter(state or {})
