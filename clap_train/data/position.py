"""Where the training stream stands. The train loader owns it (advanced as batches are trained on, saved
and restored with the checkpoint); the dataset only reads it when an epoch's iterator starts."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class StreamPosition:
    batches: int = 0  # batches trained on so far, on this rank
    slots: dict = dataclasses.field(default_factory=dict)  # virtual slot -> its stream state after its last batch
    carry: dict = dataclasses.field(default_factory=dict)  # source -> shards carried over from another allocation

    def after(self, batch: int, slot: int, state: dict) -> StreamPosition:
        """The position once `batch` (read by `slot`, leaving its stream at `state`) has been trained on."""
        return StreamPosition(batch + 1, {**self.slots, slot: state}, self.carry)
