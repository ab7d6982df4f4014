"""A time-out for every collective we call: a rank that waits too long ends the whole job with one message
that names each rank and where it is.

Why our own: a collective that some rank never reaches waits for ever under NCCL's defaults, and under gloo
it fails after the process-group time-out with a message that names neither the call nor the other ranks.
The main thread only records where it is (`watch("what")`, an attribute write: no I/O on the step's path).
A daemon thread per rank publishes that to the process group's own key-value store every few seconds,
checks its own rank's wait against the time-out, and watches for an abort posted by any other rank.
On a time-out it posts the abort (so ranks stuck in collectives Lightning owns stop too), prints the
report and exits the process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from contextlib import contextmanager

log = logging.getLogger("clap_train")
_ABORT = "clap_train/abort"
_active: Watchdog | None = None


class Watchdog:
    def __init__(self, store, rank: int, world: int, timeout_s: float, poll_s: float = 2.0):
        self.store, self.rank, self.world = store, rank, world
        self.timeout_s, self.poll_s = float(timeout_s), float(poll_s)
        self.phase, self.label, self.since, self.waiting = "start-up", "", time.monotonic(), False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="clap_train-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def where(self) -> str:
        waited = time.monotonic() - self.since
        if self.waiting:
            return f"waiting {waited:.0f} s in {self.label}, during {self.phase}"
        return f"at {self.phase} for {waited:.0f} s"

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.store.set(f"clap_train/where/{self.rank}", self.where())
                if self.store.check([_ABORT]):
                    self._exit(f"rank {self.rank}: stopping, {self.store.get(_ABORT).decode()}")
                if self.waiting and time.monotonic() - self.since > self.timeout_s:
                    self._report_and_abort()
            except Exception as e:  # the store lives on rank 0: losing it means rank 0 is gone
                if self._stop.is_set():
                    return
                self._exit(
                    f"rank {self.rank}: lost contact with the other ranks ({type(e).__name__}: {e}) "
                    f"while {self.where()}"
                )

    def _report_and_abort(self) -> None:
        lines = []
        for r in range(self.world):
            key = f"clap_train/where/{r}"
            lines.append(f"  rank {r}: {self.store.get(key).decode() if self.store.check([key]) else 'unknown'}")
        msg = (
            f"rank {self.rank} waited more than {self.timeout_s:.0f} s (distributed.timeout_s) in "
            f"{self.label} during {self.phase}: some rank never reached it.\n" + "\n".join(lines)
        )
        self.store.set(_ABORT, f"because {msg}")
        print(f"error: collective time-out: {msg}", file=sys.stderr, flush=True)
        time.sleep(2 * self.poll_s)  # the store lives on rank 0: let the other ranks read the abort first
        self._exit(msg, printed=True)

    def _exit(self, msg: str, printed: bool = False) -> None:
        if not printed:
            print(f"error: collective time-out: {msg}", file=sys.stderr, flush=True)
        log.error("collective time-out: %s", msg)
        os._exit(3)


def start(timeout_s: float, poll_s: float = 2.0) -> Watchdog | None:
    """Start this rank's watchdog (all ranks call it once the process group exists); None when single-process."""
    global _active
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1 or not timeout_s:
        return None
    if _active is None:
        from torch.distributed.distributed_c10d import _get_default_store

        _active = Watchdog(_get_default_store(), dist.get_rank(), dist.get_world_size(), timeout_s, poll_s).start()
    return _active


def abort(reason: str) -> None:
    """Tell every rank's watchdog to end its process (this rank stops on its own, e.g. a full disk)."""
    if _active is not None:
        with contextlib.suppress(Exception):
            _active.store.set(_ABORT, f"because rank {_active.rank} stopped: {reason}")
            time.sleep(2 * _active.poll_s)  # the store lives on rank 0: let the others read it first


def stop() -> None:
    global _active
    if _active is not None:
        _active.stop()
        _active = None


def mark(label: str) -> None:
    """Record where this rank is (not inside a collective)."""
    if _active is not None:
        _active.phase, _active.since, _active.waiting = label, time.monotonic(), False


@contextmanager
def watch(label: str):
    """Around a collective: the watchdog ends the job when this rank waits here longer than the time-out."""
    w = _active
    if w is None:
        yield
        return
    if w.waiting:  # nested (a strategy collective inside a watched step): the outer label says more
        yield
        return
    w.label, w.since, w.waiting = label, time.monotonic(), True
    try:
        yield
    finally:
        w.since, w.waiting = time.monotonic(), False


STRATEGY_COLLECTIVES = ("barrier", "broadcast", "reduce", "all_gather", "reduce_boolean_decision")


def watch_strategy(strategy) -> None:
    """Watch the collectives Lightning itself calls through its strategy (ModelCheckpoint's broadcast of the
    path, `trainer.test`'s, metric syncs): wrapped on this instance, each labelled with its caller."""
    if getattr(strategy, "_clap_watched", False):
        return
    for name in STRATEGY_COLLECTIVES:
        fn = getattr(strategy, name, None)
        if fn is not None:
            setattr(strategy, name, _watched(fn, name))
    strategy._clap_watched = True


def _watched(fn, name: str):
    def call(*args, **kwargs):
        if _active is None:
            return fn(*args, **kwargs)
        f = sys._getframe(1)
        where = f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno} {f.f_code.co_name}"
        with watch(f"strategy.{name} called from {where}"):
            return fn(*args, **kwargs)

    return call
