"""Locks: one writer per part (held for a whole job), and the short folder lock around merges.

Part of :class:`featvis.jobs.folder.RenderFolder` (see that package for the rules).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from typing import Iterator, Optional

from ...errors import UsageError
from .files import _FOLDER_TAG, _WRITER, LOCK, MAIN, PARTS
from .records import MANIFEST_VERSION

#: How long a second writer waits for a lock before giving up (seconds; FEATVIS_LOCK_WAIT overrides).
LOCK_WAIT = 10.0


class FolderLocks:
    """The writer lock and the folder lock (a mixin of RenderFolder)."""

    # --- locks ---------------------------------------------------------------------------------------

    def _acquire(self, rel: str, wait: float, what: str) -> int:
        """Take the lock file ``rel`` (opened through the folder's opener: contained, never a
        symlink or a file with another name). Every failure is a :class:`UsageError` naming the
        lock, and leaves no descriptor open."""
        fd = self._open_lock(rel)
        path = self.path(rel)
        try:
            deadline = time.monotonic() + max(0.0, wait)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        try:
                            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
                            info = json.loads(holder) if holder else {}
                            info = info if isinstance(info, dict) else {}
                        except (OSError, ValueError):
                            info = {}
                        who = (f"process {info.get('pid')} on {info.get('host')} ({info.get('command')})" if info
                               else "another process")
                        raise UsageError(f"{self.root} is in use by {who}: {what}; wait for it to finish, or choose "
                                         "another --out") from None
                    time.sleep(0.05)
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "command": " ".join(["featvis"] + sys.argv[1:])[:300], "since": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            return fd
        except BaseException as e:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError:
                pass
            os.close(fd)
            if isinstance(e, OSError):
                hint = "free some space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "check the folder's permissions"
                raise UsageError(f"cannot take the lock {path} ({e.strerror or e}); {hint}, then run the same "
                                 "command again") from None
            raise

    @staticmethod
    def _release(fd: int) -> None:
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextmanager
    def lock(self, writer: str = MAIN, wait: Optional[float] = None) -> Iterator["FolderLocks"]:
        """Make this object the folder's writer ``writer`` for the block (exclusive per writer id:
        a second process with the same id waits ``wait`` seconds, default :data:`LOCK_WAIT`, then
        gets a :class:`UsageError` naming the holder). Processes with different ids (shards) write
        side by side, each into its own part. Creates the folder; removes temporary files this
        writer's killed predecessors left; loads this writer's part (converting a version 1
        folder's manifest)."""
        if not _WRITER.match(str(writer)):
            raise ValueError(f"writer id {writer!r}: use letters, digits, '_', '.', '-' (e.g. 'shard-0-of-4')")
        if self.writer is not None:
            raise RuntimeError(f"{self} is already locked as writer {self.writer!r}")
        wait = float(os.environ.get("FEATVIS_LOCK_WAIT", LOCK_WAIT)) if wait is None else wait
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create --out {self.root} ({e.strerror}); choose another --out") from e
        fd = self._acquire(f"{PARTS}/{writer}.lock", wait, f"it is writing there as {writer!r}")
        self._lock_fd, self.writer = fd, writer
        try:
            self._clean_temp(writer, recursive=True)
            try:
                parts, self._damage = self.read_parts(), None
            except UsageError as e:  # only claim(force=True) may go on: it starts over
                parts, self._damage = {}, e
            self.part = parts.get(writer) or self._empty_part()
            self.part["featvis_manifest"] = MANIFEST_VERSION
            self.part["writer"] = writer
            yield self
        finally:
            try:
                self._release_claim()
            except (OSError, UsageError) as e:  # the claim then counts no more than this lock is held
                print(f"featvis: could not take back the claim of {writer!r} ({e})", file=sys.stderr)
            finally:
                self.writer, self.part, self._lock_fd, self._damage = None, None, None, None
                self._release(fd)

    def _writer_alive(self, writer: str) -> bool:
        """Whether a process holds ``writer``'s lock now (tried without waiting, and let go)."""
        try:
            fd = os.open(self.path(f"{PARTS}/{writer}.lock"),
                         os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except (OSError, UsageError):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    @contextmanager
    def _folder_lock(self, wait: Optional[float] = None):
        wait = float(os.environ.get("FEATVIS_LOCK_WAIT", LOCK_WAIT)) if wait is None else wait
        fd = self._acquire(LOCK, wait, "it is updating the manifest")
        try:
            self._clean_temp(_FOLDER_TAG, recursive=False)
            yield
        finally:
            self._release(fd)
