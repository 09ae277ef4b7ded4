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

from pathlib import Path
from typing import Optional

from ...errors import UsageError
from .derived import SHEET_MIN_CELL, FolderDerived, sheet_title
from .display import FolderDisplay
from .files import LOCK, MAIN, MANIFEST, PARTS, FolderFiles, atomic_write
from .locks import LOCK_WAIT, FolderLocks
from .records import (ADDED_SETTINGS, MANIFEST_VERSION, READABLE_VERSIONS, FolderRecords, check_records, dumps,
                      header_differences, merge_records, records_digest)

__all__ = [
    "RenderFolder", "merge", "atomic_write", "check_records", "dumps", "header_differences", "merge_records",
    "records_digest", "sheet_title", "ADDED_SETTINGS", "LOCK", "LOCK_WAIT", "MAIN", "MANIFEST", "MANIFEST_VERSION",
    "PARTS", "READABLE_VERSIONS", "SHEET_MIN_CELL",
]


class RenderFolder(FolderFiles, FolderLocks, FolderRecords, FolderDerived, FolderDisplay):
    """A render folder (see the module docstring). Reading needs nothing; writing needs
    :meth:`lock` (a context manager that makes this object the folder's writer)."""

    def __init__(self, path):
        self.root = Path(path)
        self.writer: Optional[str] = None
        self.part: Optional[dict] = None  # this writer's records (while the lock is held)
        self._lock_fd: Optional[int] = None
        self._damage: Optional[UsageError] = None  # why the records could not be read (claim(force=True) starts over)
        self._claim_undo = None  # how to take back this writer's claim if it records no image (claim())

    def __repr__(self):
        return f"RenderFolder({str(self.root)!r})"


def merge(folder, wait: Optional[float] = None) -> dict:
    """Rebuild ``folder``'s ``manifest.json`` from its parts and every stale sheet, under the
    folder lock (what ``featvis merge DIR`` runs after sharded jobs). Returns the merged records;
    :class:`UsageError` if the parts disagree on model, weights or settings, or one is malformed."""
    rf = folder if isinstance(folder, RenderFolder) else RenderFolder(folder)
    if not rf.exists():
        raise UsageError(f"{rf.root} holds no featvis records (no manifest.json, no parts/); give a render folder")
    return rf.merge(sheets=None, wait=wait)
