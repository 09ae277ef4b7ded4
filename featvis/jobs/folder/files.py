"""Paths and opening: where everything lives inside a render folder, containment, the one opener,
atomic writes.

Every file inside the folder is opened through :meth:`FolderFiles.open_file` (reading, locking)
or written through :meth:`FolderFiles.write_file` (atomic) and deleted through
:meth:`FolderFiles._delete`: the path is contained (:meth:`FolderFiles.path`), a symlink in the
file's own place is never followed (``O_NOFOLLOW``), what was opened must be a regular file
(``fstat`` on the descriptor: a FIFO neither blocks nor is read), a file read is bounded in size,
and every error is one line naming the file.

Part of :class:`featvis.jobs.folder.RenderFolder` (see that package for the rules).
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import signal
import stat
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Dict, List, Optional

from ...errors import UsageError

MANIFEST = "manifest.json"
PARTS = "parts"
LOCK = ".featvis.lock"
#: The writer id of a plain (unsharded) job.
MAIN = "main"
_WRITER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TMP = re.compile(r"^\..+\.fvtmp-(?P<tag>[A-Za-z0-9_.-]+)-[A-Za-z0-9_]+$")
_FOLDER_TAG = "folder"  # the tag of temporary files written under the folder lock
#: The largest record (a part, ``manifest.json``, a circuit record) read, in bytes: an image's record
#: is ~250 bytes, so this holds a million images with room to spare.
MAX_RECORD_BYTES = 256 << 20
#: The largest image file inside a folder that is read or hashed (featvis writes PNGs of a few MB).
MAX_FILE_BYTES = 512 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


# --- atomic, durable writes --------------------------------------------------------------------------

def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def atomic_write(path, write: Callable[[str], None], tag: str = MAIN) -> Path:
    """``write(tmp)`` into a temporary file next to ``path``, fsync it, rename it to ``path``,
    fsync the folder. A reader sees the old file or the whole new one; a failure removes the
    temporary file, and names ``path`` in the error (disk full, read-only, ...)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.fvtmp-{tag}-", suffix="", dir=path.parent)
        os.close(fd)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes it 0600; give it the mode open() would
    except OSError as e:
        raise UsageError(f"cannot write {path} ({e.strerror or e}); check the folder and its permissions, "
                         "or choose another --out") from e
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _crash_point("rename")
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            hint = "free some space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "check the folder and its permissions"
            raise UsageError(f"cannot write {path} ({e.strerror or e}); {hint}, then run the same command again") from e
        raise
    return path



_crashes: Dict[str, int] = {}


def _crash_point(name: str) -> None:
    """Tests only: ``FEATVIS_TEST_KILL_AT=NAME[:N]`` SIGKILLs this process the N-th time (default
    1st) it passes the write point NAME (image, part, sheet, manifest, rename)."""
    spec = os.environ.get("FEATVIS_TEST_KILL_AT")
    if not spec:
        return
    point, _, n = spec.partition(":")
    if point != name:
        return
    _crashes[name] = _crashes.get(name, 0) + 1
    if _crashes[name] >= int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)

def _relative(rel: str) -> PurePosixPath:
    """``rel`` as a relative POSIX path without ``..``; ValueError otherwise."""
    if "\x00" in rel or "\\" in rel:
        raise ValueError(f"{rel!r} is not a plain relative path")
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith("~"):
        raise ValueError(f"{rel!r} is an absolute path; a render folder records paths inside itself only")
    if any(part in ("..", "") for part in rel.split("/")) or not p.parts:
        raise ValueError(f"{rel!r} leaves the folder (or is empty); a render folder records paths inside itself only")
    return p


def _open_checked(path: Path, flags: int, what: str, max_bytes: Optional[int] = None, lock: bool = False) -> int:
    """``os.open(path, flags | O_NOFOLLOW)`` refused (:class:`UsageError` naming ``path``) unless
    it is a regular file (checked with ``fstat`` on the descriptor), at most ``max_bytes`` long,
    and, for a lock that will be truncated (``lock``), the file's only name (a hard link planted
    as a lock would empty the file it shares). The descriptor is closed on every refusal."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UsageError(f"{path} is a symlink; featvis never follows a symlink in the place of {what} inside a "
                             "render folder: remove it") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode) else "not a plain file"
            raise UsageError(f"{path} is {kind}, not {what}; featvis reads and writes only regular files inside a "
                             "render folder: remove it")
        if lock and st.st_nlink > 1:
            raise UsageError(f"{path} has {st.st_nlink} names (a hard link to another file); featvis writes its "
                             "lock notes there, which would change the other file: remove it")
        if max_bytes is not None and st.st_size > max_bytes:
            raise UsageError(f"{path} is {st.st_size} bytes, more than the {max_bytes >> 20} MB {what} may have; "
                             "it is not a featvis file: move it away")
        return fd
    except BaseException:
        os.close(fd)
        raise


def _sha256(path: Path) -> Optional[str]:
    """SHA-256 of a regular file (``None`` when it is missing, a symlink, a FIFO, or too large)."""
    try:
        fd = _open_checked(Path(path), os.O_RDONLY | os.O_NONBLOCK, "a file", MAX_FILE_BYTES)
    except (OSError, UsageError):
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            return hashlib.file_digest(f, "sha256").hexdigest() if hasattr(hashlib, "file_digest") \
                else hashlib.sha256(f.read()).hexdigest()
        except OSError:
            return None


class FolderFiles:
    """The folder's paths: containment, layout, atomic writes, deletion (a mixin of RenderFolder)."""

    # --- paths ---------------------------------------------------------------------------------------

    def path(self, rel: str) -> Path:
        """The path of ``rel`` (relative, POSIX) inside the folder; :class:`UsageError` if ``rel`` is
        absolute, has ``..``, or leads out of the folder through a symlink."""
        try:
            p = _relative(str(rel))
        except ValueError as e:
            raise UsageError(f"{self.root}: {e}") from None
        full = self.root.joinpath(*p.parts)
        root = self.root.resolve()
        resolved = full.resolve()
        if resolved != root and root not in resolved.parents:
            raise UsageError(f"{self.root}: {rel!r} leads to {resolved}, outside the folder (a symlink?); "
                             "featvis reads and writes only inside --out")
        return full

    @staticmethod
    def image_rel(layer: str, stem: str, fmt: str = "png") -> str:
        """``<layer>/<stem>.<fmt>``: where a rendered image goes."""
        return f"{layer}/{stem}.{fmt}"

    @staticmethod
    def sheet_rel(layer: str) -> str:
        """``<layer>_sheet.png``: the layer's contact sheet."""
        return f"{layer}_sheet.png"

    @staticmethod
    def crop_rel(layer: str, channel: int, rank: int) -> str:
        """``<layer>/topk/<channel>/<rank>.png``: a dataset crop."""
        return f"{layer}/topk/{channel}/{rank}.png"

    def check_writable(self, layers=()) -> None:
        """``--out`` must be (or be creatable as) a folder we can write to, and each layer's folder
        not a file; probes without leaving a file."""
        out = self.root
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: it is a file, not a folder; choose another --out")
        base = out
        while not base.exists() and not base.is_symlink():
            base = base.parent
        if not base.is_dir():
            raise UsageError(f"--out {out}: {base} is a file, not a folder; choose another --out")
        for layer in layers:
            sub = self.path(layer)
            if sub.exists() and not sub.is_dir():
                raise UsageError(f"{sub} is a file, but featvis keeps layer {layer}'s images in a folder of that name; "
                                 "move the file away or choose another --out")
        try:
            fd, tmp = tempfile.mkstemp(prefix=".featvis-write-test-", dir=base)
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            raise UsageError(f"--out {out}: cannot write in {base} ({e.strerror}); choose a folder you can write to") from e

    # --- the opener ----------------------------------------------------------------------------------

    def open_file(self, rel: str, what: str = "a featvis file", max_bytes: int = MAX_FILE_BYTES) -> BinaryIO:
        """``rel`` opened for reading (binary): contained, not through a symlink, a regular file of
        at most ``max_bytes``; :class:`UsageError` naming the file otherwise (missing included).
        ``what`` names what was expected there in the message (e.g. ``"an image"``)."""
        path = self.path(rel)
        try:
            fd = _open_checked(path, os.O_RDONLY | os.O_NONBLOCK, what, max_bytes)
        except OSError as e:
            raise UsageError(f"cannot read {path} ({e.strerror or e}); it should be {what}: restore it, or run "
                             "the command that writes it again") from None
        return os.fdopen(fd, "rb")

    def read_text(self, rel: str, what: str = "a featvis record", max_bytes: int = MAX_RECORD_BYTES) -> str:
        """The UTF-8 text of ``rel`` through :meth:`open_file`."""
        with self.open_file(rel, what, max_bytes) as f:
            data = f.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{self.path(rel)} is not UTF-8 text, so not {what}; fix or remove it, or choose "
                             "another --out") from None

    def load_image(self, rel: str, what: Optional[str] = None):
        """The image at ``rel`` decoded through :func:`featvis.io.load_image` (bounded pixels and
        aspect) from a file opened by :meth:`open_file`; a PIL image. ``what`` (e.g. ``"conv2:3"``)
        is named in every error, with the file."""
        from ...io import load_image
        label = f"{self.path(rel)}" + (f" ({what})" if what else "")
        try:
            f = self.open_file(rel, "an image")
        except UsageError as e:
            raise UsageError(f"{e}" + (f" [{what}]" if what else "")) from None
        return load_image(f, name=label)

    def _open_lock(self, rel: str) -> int:
        """A lock file's descriptor (created if needed), read-write: contained, not a symlink, a
        regular file with no other name. :class:`UsageError` naming it otherwise."""
        path = self.path(rel)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return _open_checked(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, "a lock file", 1 << 20, lock=True)
        except OSError as e:
            hint = "free some space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "choose a folder you can write to"
            raise UsageError(f"cannot create the lock {path} ({e.strerror or e}); {hint}") from None

    def image_ok(self, entry: dict) -> bool:
        """Whether a record's file is there (inside the folder) with the bytes recorded."""
        try:
            path = self.path(entry["file"])
        except UsageError:
            return False
        return _sha256(path) == entry["sha256"]

    def _clean_temp(self, tag: str, recursive: bool) -> List[Path]:
        """Remove our temporary files of ``tag`` (safe: we hold the lock they were written under)."""
        removed = []
        found = self.root.rglob(".*") if recursive else self.root.glob(".*")
        for p in list(found):
            m = _TMP.match(p.name)
            if m and m.group("tag") == tag and p.is_file() and not p.is_symlink():
                try:
                    self.path(p.relative_to(self.root).as_posix())
                    p.unlink()
                    removed.append(p)
                except (OSError, UsageError):
                    pass
        return removed

    # --- writing -------------------------------------------------------------------------------------

    def write_file(self, rel: str, write: Callable[[str], None], tag: Optional[str] = None) -> Path:
        """Write ``rel`` atomically (``write(tmp_path)`` fills the temporary file)."""
        path = self.path(rel)
        return atomic_write(path, write, tag or self.writer or _FOLDER_TAG)

    def save_image(self, rel: str, image) -> str:
        """Write an image (tensor or PIL) to ``rel`` atomically; returns the SHA-256 of the file."""
        from ...io import to_pil
        self._need_writer()
        pil = to_pil(image if image.dim() == 4 else image[None])[0] if hasattr(image, "dim") else image
        path = self.write_file(rel, lambda tmp: pil.save(tmp, format="PNG"))
        _crash_point("image")
        return _sha256(path)

    def _delete(self, rel) -> List[str]:
        """Delete ``rel`` if it is a regular file inside the folder (never a symlink, a FIFO, a
        folder, or anything outside); returns ``[rel]`` when it did."""
        try:
            path = self.path(rel)
        except UsageError as e:
            print(f"featvis: not deleting {rel!r}: {e}", file=sys.stderr)
            return []
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return []
            path.unlink()
        except OSError:
            return []
        return [rel]
