"""Paths and opening: where everything lives inside a render folder, containment, atomic writes.

Part of :class:`featvis.jobs.folder.RenderFolder` (see that package for the rules).
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import signal
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, List, Optional

from ...errors import UsageError

MANIFEST = "manifest.json"
PARTS = "parts"
LOCK = ".featvis.lock"
#: The writer id of a plain (unsharded) job.
MAIN = "main"
_WRITER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TMP = re.compile(r"^\..+\.fvtmp-(?P<tag>[A-Za-z0-9_.-]+)-[A-Za-z0-9_]+$")
_FOLDER_TAG = "folder"  # the tag of temporary files written under the folder lock


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


def _sha256(path: Path) -> Optional[str]:
    try:
        with open(path, "rb") as f:
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
        try:
            path = self.path(rel)
        except UsageError as e:
            print(f"featvis: not deleting {rel!r}: {e}", file=sys.stderr)
            return []
        if path.is_file() and not path.is_symlink():
            path.unlink()
            return [rel]
        return []
