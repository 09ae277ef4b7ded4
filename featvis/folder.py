"""The render folder: the one owner of ``--out`` (layout, manifest, paths, lock, atomic writes).

Every command that reads or writes a render folder (``render``, ``topk``, ``sheet``, ``figure``,
and ``merge``/``site``) goes through :class:`RenderFolder`; no other module opens
``manifest.json``.

Layout of a folder ``DIR``::

    DIR/parts/<writer>.json    the records of one writer ("main", or e.g. "shard-0-of-4"): only
                               the process holding that writer's lock ever writes this file
    DIR/manifest.json          the merge of every part (versioned, schema-checked); derived
    DIR/<layer>/<c>.png        channel c (``<c>_<k>.png`` with several images per channel)
    DIR/<layer>/topk/<c>/<r>.png  dataset crops (``featvis topk``)
    DIR/<layer>_sheet.png      contact sheet of a layer; derived, rebuilt whenever its records change
    DIR/.featvis.lock          the folder lock: held briefly around each merge and derived write
    DIR/parts/<writer>.lock    a writer's lock: held for a whole job, one process per writer

Rules:

* Paths in records are relative (POSIX), inside ``DIR``: absolute paths, ``..`` and symlinks that
  lead out of ``DIR`` are refused (:meth:`RenderFolder.path`), for reading, writing and deleting.
* Every write goes to a temporary file in the same folder, is fsynced, renamed into place and the
  folder fsynced (:func:`atomic_write`). A temporary file's name carries its writer
  (``.NAME.fvtmp-WRITER-XXXX``): whoever holds that writer's lock removes the ones a killed
  process left behind.
* A writer's records become visible in this order: image files, its part, (under the folder lock)
  the sheet, ``manifest.json``. The parts are the truth: a kill at any point loses at most the
  batch in flight, and :meth:`RenderFolder.refresh` rebuilds a ``manifest.json`` or sheet that is
  older than the records or damaged.
* A folder is claimed only when its first records are written: a job that fails before leaves
  no file (a lock file at most).
* Reading checks the schema of every part and of a version 1 ``manifest.json``: a malformed one is
  a :class:`~featvis.errors.UsageError` naming the file and the field, never a KeyError.

>>> folder = RenderFolder("renders")
>>> with folder.lock("main"):                       # exits 2 naming the holder if another has it
...     folder.claim(header)                        # model, weights, settings (checked against the records)
...     sha = folder.save_image("mixed4a/476.png", image)
...     folder.record_images("mixed4a", {"476": {...}}, section={"objective": ..., "channels": 508})
>>> folder.read()["layers"]["mixed4a"]["images"]["476"]["file"]
'mixed4a/476.png'
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
import signal
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, Iterator, List, Optional

from .errors import UsageError

MANIFEST = "manifest.json"
PARTS = "parts"
LOCK = ".featvis.lock"
#: Version 2: records live in ``parts/<writer>.json``, ``manifest.json`` is their merge.
#: Version 1 folders (one ``manifest.json``, featvis 0.1) are read, and converted on the first write.
MANIFEST_VERSION = 2
READABLE_VERSIONS = (1, 2)
#: The writer id of a plain (unsharded) job.
MAIN = "main"
#: How long a second writer waits for a lock before giving up (seconds; FEATVIS_LOCK_WAIT overrides).
LOCK_WAIT = 10.0
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


def dumps(data) -> str:
    """JSON text of a record; a non-finite number (NaN, inf) is an error, never ``Infinity``."""
    try:
        return json.dumps(data, indent=1, allow_nan=False) + "\n"
    except ValueError as e:
        raise ValueError(f"a record holds a non-finite number ({e}); it was not written") from e


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


# --- the schema ------------------------------------------------------------------------------------

class _Bad(Exception):
    pass


def _need(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise _Bad(f"{where}: {what}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _check_rel(value, where: str) -> None:
    _need(isinstance(value, str) and value != "", where, "expected a relative path (a string)")
    try:
        _relative(value)
    except ValueError as e:
        raise _Bad(f"{where}: {e}") from None


def _check_images(images, where: str) -> None:
    _need(isinstance(images, dict), where, "expected an object of images")
    for name, e in images.items():
        w = f"{where}.{name}"
        _need(isinstance(e, dict), w, "expected an object")
        for key in ("channel", "k", "seed"):
            _need(_is_int(e.get(key)) and e[key] >= 0, f"{w}.{key}", "expected a non-negative integer")
        _need(e.get("value") is None or _is_num(e.get("value")), f"{w}.value", "expected a finite number")
        _check_rel(e.get("file"), f"{w}.file")
        _need(isinstance(e.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", e["sha256"]) is not None,
              f"{w}.sha256", "expected 64 hex digits")
        if "run" in e:
            _need(_is_int(e["run"]) and e["run"] >= 0, f"{w}.run", "expected a non-negative integer")


def _check_topk(section, where: str) -> None:
    _need(isinstance(section, dict), where, "expected an object")
    channels = section.get("channels")
    _need(isinstance(channels, dict), f"{where}.channels", "expected an object of channels")
    for c, recs in channels.items():
        _need(isinstance(recs, list), f"{where}.channels.{c}", "expected a list")
        for i, r in enumerate(recs):
            w = f"{where}.channels.{c}[{i}]"
            _need(isinstance(r, dict), w, "expected an object")
            _check_rel(r.get("crop"), f"{w}.crop")
            _need(_is_num(r.get("value")), f"{w}.value", "expected a finite number")


def check_records(data, where: str) -> dict:
    """Check a part or a manifest (version 1 or 2) field by field; returns it, or raises
    :class:`UsageError` naming the file and the first malformed field."""
    try:
        _need(isinstance(data, dict), where, "expected a JSON object")
        version = data.get("featvis_manifest")
        if version is None and "layers" not in data and "topk" in data:
            version = 0  # a topk-only manifest of featvis 0.1, which wrote no version
        _need(version in (0,) + READABLE_VERSIONS, f"{where}.featvis_manifest",
              f"expected one of {', '.join(map(str, READABLE_VERSIONS))}, got {version!r}")
        if version == 1:
            for key in ("model", "weights", "settings", "layers"):
                _need(key in data, where, f"missing {key!r}")
        if data.get("model") is not None:
            _need(isinstance(data["model"], str), f"{where}.model", "expected a string")
        if data.get("weights") is not None:
            w = data["weights"]
            _need(isinstance(w, dict) and isinstance(w.get("spec"), str) and isinstance(w.get("sha256"), str),
                  f"{where}.weights", "expected {\"spec\": ..., \"sha256\": ...}")
        if data.get("settings") is not None:
            _need(isinstance(data["settings"], dict), f"{where}.settings", "expected an object")
        _need(isinstance(data.get("runs", []), list), f"{where}.runs", "expected a list")
        layers = data.get("layers", {})
        _need(isinstance(layers, dict), f"{where}.layers", "expected an object of layers")
        for layer, section in layers.items():
            w = f"{where}.layers.{layer}"
            _need(isinstance(section, dict), w, "expected an object")
            _check_rel(layer, w)
            _check_images(section.get("images"), f"{w}.images")
            if "channels" in section:
                _need(_is_int(section["channels"]) and section["channels"] > 0, f"{w}.channels", "expected a positive integer")
        topk = data.get("topk", {})
        _need(isinstance(topk, dict), f"{where}.topk", "expected an object of layers")
        for layer, section in topk.items():
            _check_topk(section, f"{where}.topk.{layer}")
    except _Bad as e:
        raise UsageError(f"{e} (the file is damaged or not a featvis manifest); fix or remove it, choose another "
                         "--out, or pass --force to start over there") from None
    return data


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


def records_digest(section: dict) -> str:
    """What a layer's sheet shows: SHA-256 over its images' names, files and hashes, in order."""
    h = hashlib.sha256()
    for name, e in section.get("images", {}).items():
        h.update(f"{name}|{e['file']}|{e['sha256']}\n".encode())
    return h.hexdigest()


def _sha256(path: Path) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() if hasattr(hashlib, "file_digest") \
                else hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


# --- merging parts -----------------------------------------------------------------------------------

_HEADER = ("model", "weights", "settings")


#: Settings added after folders were first written, with the value older folders were made with,
#: so that adding a setting does not make every older folder refuse to resume.
ADDED_SETTINGS = {"deterministic": True, "preset": None}


def header_differences(old: dict, new: dict) -> List[str]:
    """How two records' model, weights and settings differ (``[]``: the same renders)."""
    diffs = []
    if old.get("model") != new.get("model"):
        diffs.append(f"model {old.get('model')} -> {new.get('model')}")
    ow, nw = old.get("weights") or {}, new.get("weights") or {}
    if ow.get("sha256") != nw.get("sha256"):
        diffs.append(f"weights {ow.get('spec')} -> {nw.get('spec')} (a different network)")
    os_, ns = old.get("settings") or {}, new.get("settings") or {}
    for key in sorted(set(os_) | set(ns), key=lambda k: list(ns).index(k) if k in ns else len(ns)):
        before = os_.get(key, ADDED_SETTINGS.get(key))  # a setting added since: what it was before
        if before != ns.get(key, ADDED_SETTINGS.get(key)):
            diffs.append(f"{key} {before} -> {ns.get(key)}")
    return diffs


def merge_records(parts: Dict[str, dict]) -> dict:
    """One manifest from the parts (``{writer: part}``): their image records united (run indices
    renumbered over the concatenated runs), the newest top-k record of each layer. Parts that
    record renders must agree on model, weights and settings (else :class:`UsageError`)."""
    merged: dict = {"featvis_manifest": MANIFEST_VERSION, "model": None, "weights": None, "settings": None,
                    "runs": [], "layers": {}, "topk": {}}
    owner = None
    for writer in sorted(parts, key=lambda w: (w != MAIN, w)):
        part = parts[writer]
        if part.get("settings") is not None:
            if owner is None:
                owner = writer
                for key in _HEADER + ("featvis", "torch", "device"):
                    if key in part:
                        merged[key] = part[key]
            else:
                diffs = header_differences(parts[owner], part)
                if diffs:
                    raise UsageError(f"parts/{writer}.json and parts/{owner}.json hold renders made with other "
                                     f"settings ({'; '.join(diffs)}); keep one of them (move the other part away)")
        offset = len(merged["runs"])
        merged["runs"] += list(part.get("runs", []))
        for layer, section in part.get("layers", {}).items():
            into = merged["layers"].setdefault(layer, {"images": {}})
            for key, value in section.items():
                if key != "images":
                    into.setdefault(key, value)
            for name, e in section.get("images", {}).items():
                if name not in into["images"]:
                    into["images"][name] = dict(e, run=e.get("run", 0) + offset) if "run" in e else dict(e)
        for layer, section in part.get("topk", {}).items():
            have = merged["topk"].get(layer)
            if have is None or section.get("recorded", 0) >= have.get("recorded", 0):
                merged["topk"][layer] = section
    for section in merged["layers"].values():
        section["images"] = dict(sorted(section["images"].items(), key=lambda kv: (kv[1]["channel"], kv[1]["k"])))
    return merged


# --- the folder ----------------------------------------------------------------------------------------

class RenderFolder:
    """A render folder (see the module docstring). Reading needs nothing; writing needs
    :meth:`lock` (a context manager that makes this object the folder's writer)."""

    def __init__(self, path):
        self.root = Path(path)
        self.writer: Optional[str] = None
        self.part: Optional[dict] = None  # this writer's records (while the lock is held)
        self._lock_fd: Optional[int] = None
        self._damage: Optional[UsageError] = None  # why the records could not be read (claim(force=True) starts over)

    def __repr__(self):
        return f"RenderFolder({str(self.root)!r})"

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

    # --- reading -------------------------------------------------------------------------------------

    def _load(self, path: Path, where: str) -> dict:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{path} is not UTF-8 text, so not a featvis manifest; fix or remove it, choose another "
                             "--out, or pass --force to start over there") from None
        except OSError as e:
            raise UsageError(f"cannot read {path} ({e.strerror or e}); fix its permissions or "
                             "choose another --out") from e
        try:
            data = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not JSON")))
        except ValueError as e:
            raise UsageError(f"{path} is not valid JSON ({e}); fix or remove it, choose another --out, or pass "
                             "--force to start over there") from None
        return check_records(data, where)

    def part_names(self) -> List[str]:
        """The writers that have a part here (sorted, ``main`` first)."""
        d = self.root / PARTS
        if not d.is_dir():
            return []
        names = [p.stem for p in d.glob("*.json") if _WRITER.match(p.stem)]
        return sorted(names, key=lambda w: (w != MAIN, w))

    def read_parts(self) -> Dict[str, dict]:
        """``{writer: part}`` (schema-checked). A version 1 folder without parts reads as one
        part, ``main``: its ``manifest.json``."""
        names = self.part_names()
        if names:
            return {w: self._load(self.path(f"{PARTS}/{w}.json"), f"{PARTS}/{w}.json") for w in names}
        legacy = self.root / MANIFEST
        if legacy.is_file():
            data = self._load(legacy, MANIFEST)
            if data.get("featvis_manifest", 0) in (0, 1):  # 0: featvis 0.1's topk-only manifest, unversioned
                return {MAIN: data}
            if data.get("layers") or data.get("topk"):  # version 2 records whose parts are gone
                raise UsageError(f"{legacy} names parts that are missing from {self.root / PARTS}; restore them, "
                                 "or pass --force to start over there")
        return {}

    def read(self) -> Optional[dict]:
        """The folder's records, merged from its parts (always current, whatever state
        ``manifest.json`` is in); ``None`` for a folder without records."""
        parts = self.read_parts()
        if not parts:
            return None
        return merge_records(parts)

    def exists(self) -> bool:
        """Whether the folder holds featvis records."""
        return bool(self.part_names()) or (self.root / MANIFEST).is_file()

    def image_ok(self, entry: dict) -> bool:
        """Whether a record's file is there (inside the folder) with the bytes recorded."""
        try:
            path = self.path(entry["file"])
        except UsageError:
            return False
        return _sha256(path) == entry["sha256"]

    # --- locks ---------------------------------------------------------------------------------------

    def _acquire(self, path: Path, wait: float, what: str) -> int:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise UsageError(f"cannot create the lock {path} ({e.strerror}); choose a folder you can write to") from e
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
                    except (OSError, ValueError):
                        info = {}
                    os.close(fd)
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

    @staticmethod
    def _release(fd: int) -> None:
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @contextmanager
    def lock(self, writer: str = MAIN, wait: Optional[float] = None) -> Iterator["RenderFolder"]:
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
        fd = self._acquire(self.path(f"{PARTS}/{writer}.lock"), wait, f"it is writing there as {writer!r}")
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
            self.writer, self.part, self._lock_fd, self._damage = None, None, None, None
            self._release(fd)

    @contextmanager
    def _folder_lock(self, wait: Optional[float] = None):
        wait = float(os.environ.get("FEATVIS_LOCK_WAIT", LOCK_WAIT)) if wait is None else wait
        fd = self._acquire(self.root / LOCK, wait, "it is updating the manifest")
        try:
            self._clean_temp(_FOLDER_TAG, recursive=False)
            yield
        finally:
            self._release(fd)

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

    def _need_writer(self):
        if self.writer is None:
            raise RuntimeError(f"{self}: writing needs the lock; use `with folder.lock(writer):`")
        if self._damage is not None:
            raise self._damage

    @staticmethod
    def _empty_part() -> dict:
        return {"featvis_manifest": MANIFEST_VERSION, "model": None, "weights": None, "settings": None,
                "runs": [], "layers": {}, "topk": {}}

    # --- writing -------------------------------------------------------------------------------------

    def write_file(self, rel: str, write: Callable[[str], None], tag: Optional[str] = None) -> Path:
        """Write ``rel`` atomically (``write(tmp_path)`` fills the temporary file)."""
        path = self.path(rel)
        return atomic_write(path, write, tag or self.writer or _FOLDER_TAG)

    def save_image(self, rel: str, image) -> str:
        """Write an image (tensor or PIL) to ``rel`` atomically; returns the SHA-256 of the file."""
        from .io import to_pil
        self._need_writer()
        pil = to_pil(image if image.dim() == 4 else image[None])[0] if hasattr(image, "dim") else image
        path = self.write_file(rel, lambda tmp: pil.save(tmp, format="PNG"))
        _crash_point("image")
        return _sha256(path)

    def claim(self, header: dict, force: bool = False) -> List[str]:
        """Set this writer's model, weights and settings (``header``: those keys plus version
        info). Refused (:class:`UsageError`) when the folder's records were made with others,
        unless ``force``: then every part's render records go (top-k records stay) and their
        image files and sheets are deleted, only inside the folder. Returns the files deleted."""
        if not force:
            self._need_writer()
        elif self.writer is None:
            raise RuntimeError(f"{self}: writing needs the lock; use `with folder.lock(writer):`")
        deleted: List[str] = []
        with self._folder_lock():
            if force:
                parts = {}
                for w in self.part_names():
                    try:
                        parts[w] = self._load(self.path(f"{PARTS}/{w}.json"), f"{PARTS}/{w}.json")
                    except UsageError as e:  # damaged: its file names are not trusted, nothing is deleted for it
                        print(f"featvis: {e}; starting over without it", file=sys.stderr)
                        self.path(f"{PARTS}/{w}.json").unlink()
                if not parts and (self.root / MANIFEST).is_file():
                    try:
                        parts = self.read_parts()
                    except UsageError as e:
                        print(f"featvis: {e}; starting over without it", file=sys.stderr)
                self._damage = None
                self.part = parts.get(self.writer) or self._empty_part()
                self.part.update(featvis_manifest=MANIFEST_VERSION, writer=self.writer)
            else:
                parts = self.read_parts()
            parts[self.writer] = self.part
            owners = {w: p for w, p in parts.items() if p.get("settings") is not None}
            if force:
                for w, p in parts.items():
                    for layer, section in p.get("layers", {}).items():
                        for e in section.get("images", {}).values():
                            deleted += self._delete(e.get("file"))
                        deleted += self._delete(self.sheet_rel(layer))
                    p.update(model=None, weights=None, settings=None, runs=[], layers={})
                    if w != self.writer:
                        self._write_part(w, p)
            else:
                for w, p in owners.items():
                    diffs = header_differences(p, header)
                    if diffs:
                        raise UsageError(f"{self.root} holds renders made with other settings ({'; '.join(diffs)}); "
                                         "repeat those settings to resume, choose another --out, or pass --force to "
                                         "start over there")
            if force and (deleted or self.part_names() or (self.root / MANIFEST).exists()):  # the reset itself; the new settings come with the first records
                self._write_part(self.writer, self.part)
                self._merge_locked([])
            self.part.update({k: v for k, v in header.items() if k not in ("layers", "topk", "runs")})
        return deleted

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

    def add_run(self, run: dict) -> int:
        """Append a run record (argv, versions, device...) to this writer's part; its index."""
        self._need_writer()
        self.part.setdefault("runs", []).append(run)
        return len(self.part["runs"]) - 1

    def record_images(self, layer: str, entries: Dict[str, dict], section: Optional[dict] = None,
                      sheet: bool = True) -> dict:
        """Record rendered images of ``layer`` (``{stem: {"channel", "k", "seed", "value", "file",
        "sha256", ...}}``, files already written) in this writer's part; then, under the folder
        lock, rebuild the layer's sheet (``sheet=True``) and ``manifest.json``. ``section``: the
        layer's other fields (``objective``, ``channels``). Returns the merged manifest."""
        self._need_writer()
        sec = self.part.setdefault("layers", {}).setdefault(layer, {"images": {}})
        sec.update(section or {})
        sec["images"].update(entries)
        sec["images"] = dict(sorted(sec["images"].items(), key=lambda kv: (kv[1]["channel"], kv[1]["k"])))
        check_records(self.part, f"{PARTS}/{self.writer}.json")
        self._write_part(self.writer, self.part)
        return self.merge(sheets=[layer] if sheet else [])

    def record_topk(self, layer: str, record: dict) -> dict:
        """Record (replace) ``layer``'s top-k dataset examples in this writer's part, then merge.
        ``record["channels"]``: ``{channel: [{"rank", "value", "crop", ...}, ...]}``."""
        self._need_writer()
        record = dict(record, recorded=time.time())
        self.part.setdefault("topk", {})[layer] = record
        check_records(self.part, f"{PARTS}/{self.writer}.json")
        self._write_part(self.writer, self.part)
        return self.merge(sheets=[])

    def _write_part(self, writer: str, part: dict) -> None:
        text = dumps(part)
        self.write_file(f"{PARTS}/{writer}.json", lambda tmp: Path(tmp).write_text(text),
                        tag=writer if writer == self.writer else _FOLDER_TAG)
        _crash_point("part")

    # --- derived files -----------------------------------------------------------------------------

    def _derived(self) -> dict:
        """``manifest.json``'s record of the derived files and parts it was built from ({} if none/damaged)."""
        try:
            data = json.loads((self.root / MANIFEST).read_text())
            return data.get("derived", {}) if isinstance(data, dict) and isinstance(data.get("derived"), dict) else {}
        except (OSError, ValueError):
            return {}

    def _part_digests(self) -> Dict[str, Optional[str]]:
        return {w: _sha256(self.root / PARTS / f"{w}.json") for w in self.part_names()}

    def sheet_is_stale(self, layer: str, manifest: Optional[dict] = None) -> bool:
        """Whether ``<layer>_sheet.png`` is missing, damaged, or older than the layer's records."""
        manifest = manifest if manifest is not None else self.read()
        section = (manifest or {}).get("layers", {}).get(layer)
        if not section or not section.get("images"):
            return False
        have = self._derived().get("sheets", {}).get(layer, {})
        return (have.get("records") != records_digest(section)
                or have.get("sha256") is None or _sha256(self.root / self.sheet_rel(layer)) != have["sha256"])

    def manifest_is_stale(self) -> bool:
        """Whether ``manifest.json`` is missing, damaged, or not the merge of the current parts."""
        if not self.part_names():
            return False  # a version 1 folder: its manifest is the record itself
        return self._derived().get("parts") != self._part_digests()

    def merge(self, sheets=None, wait: Optional[float] = None) -> dict:
        """Under the folder lock: rebuild the given layers' sheets (``None``: every stale one)
        and write ``manifest.json`` as the merge of the parts if anything changed. Returns the
        merged manifest. The coming ``featvis merge`` calls this."""
        with self._folder_lock(wait):
            return self._merge_locked(sheets)

    def _merge_locked(self, sheets=None) -> dict:
        if not self.part_names():
            return self.read() or {}
        manifest = self.read()
        derived = self._derived()
        sheet_info = dict(derived.get("sheets", {}))
        todo = [layer for layer in manifest["layers"] if self.sheet_is_stale(layer, manifest)] if sheets is None \
            else [layer for layer in sheets if self.sheet_is_stale(layer, manifest)]
        for layer in todo:
            path = self.write_sheet(layer, manifest)
            if path is not None:
                sheet_info[layer] = {"file": self.sheet_rel(layer), "sha256": _sha256(path),
                                     "records": records_digest(manifest["layers"][layer])}
        sheet_info = {k: v for k, v in sheet_info.items() if k in manifest["layers"]}
        digests = self._part_digests()
        if todo or derived.get("parts") != digests or derived.get("sheets", {}) != sheet_info:
            manifest["derived"] = {"parts": digests, "sheets": sheet_info}
            text = dumps(manifest)
            self.write_file(MANIFEST, lambda tmp: Path(tmp).write_text(text), tag=_FOLDER_TAG)
            _crash_point("manifest")
        manifest["derived"] = {"parts": digests, "sheets": sheet_info}
        return manifest

    def refresh(self, wait: Optional[float] = None) -> bool:
        """Rebuild whatever derived file is stale (``manifest.json``, sheets); nothing is written
        when all are current. Returns whether anything was rebuilt."""
        if not self.part_names():
            return False
        manifest = self.read()
        stale = self.manifest_is_stale() or any(self.sheet_is_stale(layer, manifest) for layer in manifest["layers"])
        if stale:
            self.merge(sheets=None, wait=wait)
        return stale

    def write_sheet(self, layer: str, manifest: Optional[dict] = None, cols: Optional[int] = None,
                    labels: bool = True, path=None, cell: Optional[int] = None, title: bool = True) -> Optional[Path]:
        """The contact sheet of ``layer``'s recorded images: ``<layer>_sheet.png`` in the folder (a
        derived file), or ``path`` (PNG or PDF, anywhere the user names). Rows hold one channel's
        ``diversity`` images when there are several. ``cell``: the cell size in pixels (default:
        the render size, enlarged by a whole factor to at least :data:`SHEET_MIN_CELL`); ``title``:
        the model, layer and settings above the grid (:func:`sheet_title`). ``None`` when the layer
        has no images."""
        from .io import sheet
        manifest = manifest if manifest is not None else self.read()
        entries = list(manifest["layers"][layer]["images"].items())
        if not entries:
            return None
        settings = manifest.get("settings") or {}
        K = int(settings.get("diversity", 1))
        cols = cols or (K if K > 1 else math.ceil(math.sqrt(len(entries))))
        if cell is None:
            size = int(settings.get("size", SHEET_MIN_CELL))
            cell = size * math.ceil(SHEET_MIN_CELL / size) if size < SHEET_MIN_CELL else size
        files = [self.path(e["file"]) for _, e in entries]
        names = [name for name, _ in entries] if labels else None
        head = sheet_title(manifest, layer) if title else None
        if path is not None:
            sheet(files, labels=names, cols=cols, path=path, cell=cell, title=head)
            return Path(path)
        image = sheet(files, labels=names, cols=cols, cell=cell, title=head)
        out = self.write_file(self.sheet_rel(layer), lambda tmp: image.save(tmp, format="PNG"), tag=_FOLDER_TAG)
        _crash_point("sheet")
        return out


#: Sheets enlarge smaller renders to cells this wide (whole-pixel steps): a 64 px layer then makes a
#: sheet one can read, not one 208 px wide.
SHEET_MIN_CELL = 128


def sheet_title(manifest: dict, layer: str) -> str:
    """``"inceptionv1 mixed4a: channel, fourier 128 px, 512 steps"``: what a sheet shows."""
    s = manifest.get("settings") or {}
    what = "neuron" if s.get("neurons") else "channel"
    extra = f", {s['diversity']} per channel" if int(s.get("diversity", 1)) > 1 else ""
    return f"{manifest.get('model', '?')} {layer}: {what}, {s.get('param', '?')} {s.get('size', '?')} px, " \
           f"{s.get('steps', '?')} steps{extra}"


def merge(folder, wait: Optional[float] = None) -> dict:
    """Rebuild ``folder``'s ``manifest.json`` from its parts and every stale sheet, under the
    folder lock (what ``featvis merge DIR`` runs after sharded jobs). Returns the merged records;
    :class:`UsageError` if the parts disagree on model, weights or settings, or one is malformed."""
    rf = folder if isinstance(folder, RenderFolder) else RenderFolder(folder)
    if not rf.exists():
        raise UsageError(f"{rf.root} holds no featvis records (no manifest.json, no parts/); give a render folder")
    return rf.merge(sheets=None, wait=wait)
