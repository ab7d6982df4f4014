"""Write to a temp file, then rename: a reader, or the job that resumes after a crash, sees the old file or
the new one whole, never a part."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def atomic_path(path: str, fsync: bool = False):
    """Yields a temp path beside `path`; when the block ends without an error the temp file (flushed to disk
    first when `fsync`) replaces `path`, otherwise it is removed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_atomic(path: str, data: bytes | str, fsync: bool = False) -> None:
    with atomic_path(path, fsync) as tmp, open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
