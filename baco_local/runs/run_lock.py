"""One run at a time per output file or run folder: an exclusive lock held for the whole run.

The lock is ``fcntl.flock`` on a small file beside what it guards (``out.jsonl.lock``, or
``RUN_DIR/sweep.lock``), which holds the process id of the run that has it, so that a second run
can say which process is in the way. The kernel drops the lock when that process ends, however it
ends: a lock file left behind by a killed run is simply taken over. The file is removed when the
run ends. (On systems without ``fcntl``, such as Windows, runs are not locked.)
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from ..errors import OutputFileError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


class RunLock:
    """An exclusive, non-blocking lock on ``path``; a context manager."""

    def __init__(self, path: Path, guarded: Path, hint: str) -> None:
        """``guarded`` is what the lock protects (named in the error); ``hint`` says what to do instead."""
        self.path = path
        self.guarded = guarded
        self.hint = hint
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise OutputFileError naming the process that holds it."""
        if fcntl is None or self._fd is not None:
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise OutputFileError(f"cannot write output file {self.guarded}: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_pid(fd)
                os.close(fd)
                who = f"another baco run (process {holder})" if holder else "another baco run"
                raise OutputFileError(f"{who} is writing {self.guarded}; wait for it to finish, or {self.hint}") from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the previous holder removed this lock file as we took it: take the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock."""
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
