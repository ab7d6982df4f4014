"""Streaming tar reader that checks every header before touching its payload.

Nothing is extracted to disk and nothing is unpickled: a member is read into memory only when it is a
regular file with a safe name, an expected extension and a bounded size. Everything else is skipped
(tarfile's stream mode skips a payload by reading it in small blocks, so memory stays bounded) and
counted. Samples are the usual webdataset grouping: consecutive members sharing a key (the path up to
the first dot of the file name).
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from typing import IO

from clap_train.data.skips import SkipCounter

AUDIO_EXTS = frozenset({"flac", "wav", "ogg", "mp3", "opus", "aiff", "aif", "au"})
TEXT_EXTS = frozenset({"json", "txt"})
DEFAULT_EXTS = AUDIO_EXTS | TEXT_EXTS
STREAM_BLOCK = 64 << 10


def split_name(name: str) -> tuple[str, str]:
    """'dir/abc.flac' -> ('dir/abc', 'flac'); the extension is everything after the first dot."""
    d, base = posixpath.split(name)
    if "." not in base:
        return name, ""
    stem, ext = base.split(".", 1)
    return posixpath.join(d, stem) if d else stem, ext.lower()


def unsafe_name(name: str) -> bool:
    return name.startswith("/") or ".." in name.split("/") or "\\" in name or "\x00" in name


def _seekable_plain_tar(f: IO[bytes]) -> bool:
    try:
        if not f.seekable():
            return False
        pos = f.tell()
        magic = f.read(2)
        f.seek(pos)
        return magic != b"\x1f\x8b"  # not gzip
    except (OSError, AttributeError, ValueError):
        return False


def iter_tar_samples(
    fileobj: IO[bytes],
    shard: str,
    skips: SkipCounter,
    exts: frozenset[str] = DEFAULT_EXTS,
    max_member_bytes: int = 64 << 20,
) -> Iterator[dict]:
    """Yield samples `{"__key__", "__shard__", <ext>: bytes, ...}` from an uncompressed or gzip tar stream."""
    seen: set[str] = set()
    cur: dict | None = None
    try:
        # A local uncompressed tar is read by offset (one read per member); pipes, URLs and gzip as a stream.
        direct = _seekable_plain_tar(fileobj)
        with tarfile.open(fileobj=fileobj, mode="r:" if direct else "r|*", bufsize=STREAM_BLOCK) as tar:
            for m in tar:
                if not m.isreg() or m.issparse():
                    if not m.isdir():
                        skips.skip("tar_link_or_special", shard, m.name)
                    continue
                if unsafe_name(m.name):
                    skips.skip("tar_unsafe_name", shard, m.name)
                    continue
                key, ext = split_name(m.name)
                if ext not in exts:
                    skips.skip("unknown_member", shard, m.name)
                    continue
                if m.size > max_member_bytes:
                    skips.skip("member_too_large", shard, f"{m.name} ({m.size} bytes)")
                    continue
                if cur is not None and key != cur["__key__"]:
                    if not cur.get("__dup__"):
                        yield cur
                    cur = None
                if cur is None:
                    if key in seen:
                        skips.skip("duplicate_key", shard, key)
                        cur = {"__key__": key, "__shard__": shard, "__dup__": True}
                    else:
                        seen.add(key)
                        cur = {"__key__": key, "__shard__": shard}
                # one read (tarfile's extractfile would wrap it in 8 KiB buffered reads); in stream mode the
                # next header read skips the block padding
                if direct:
                    fileobj.seek(m.offset_data)
                data = fileobj.read(m.size) if direct else tar.fileobj.read(m.size)
                if len(data) != m.size:
                    raise EOFError(f"{m.name}: {len(data)} of {m.size} bytes")
                if ext in cur:
                    skips.skip("duplicate_key", shard, m.name)
                    cur["__dup__"] = True
                cur[ext] = data
            if cur is not None and not cur.get("__dup__"):
                yield cur
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        # Truncated or corrupt tar: the samples before the damage were yielded; the partial one is dropped.
        skips.skip("truncated_tar", shard, repr(e))
