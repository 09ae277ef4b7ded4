"""Records and schema: the parts, their check field by field, and their merge into manifest.json.

Part of :class:`featvis.jobs.folder.RenderFolder` (see that package for the rules).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from ...errors import UsageError
from .files import _FOLDER_TAG, _WRITER, MAIN, MANIFEST, PARTS, _crash_point, _relative

#: Version 2: records live in ``parts/<writer>.json``, ``manifest.json`` is their merge.
#: Version 1 folders (one ``manifest.json``, featvis 0.1) are read, and converted on the first write.
MANIFEST_VERSION = 2
READABLE_VERSIONS = (1, 2)


def dumps(data) -> str:
    """JSON text of a record; a non-finite number (NaN, inf) is an error, never ``Infinity``."""
    try:
        return json.dumps(data, indent=1, allow_nan=False) + "\n"
    except ValueError as e:
        raise ValueError(f"a record holds a non-finite number ({e}); it was not written") from e


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
        if "negative" in e:
            _need(isinstance(e["negative"], bool), f"{w}.negative", "expected true or false")


def image_order(entry: dict) -> tuple:
    """How a layer's images are ordered: by channel, its maximizing images before its minimizing
    ones (``featvis render --negative``), then by k."""
    return entry["channel"], entry.get("negative") is True, entry["k"]


def _check_score(section, where: str) -> None:
    """A ``featvis score`` record of one layer (see :mod:`featvis.analysis.score`)."""
    _need(isinstance(section, dict), where, "expected an object")
    _need(isinstance(section.get("weights_sha256"), str), f"{where}.weights_sha256", "expected a string")
    levels = section.get("levels")
    _need(isinstance(levels, list) and all(isinstance(v, str) for v in levels), f"{where}.levels",
          "expected a list of level names")
    channels = section.get("channels")
    _need(isinstance(channels, dict), f"{where}.channels", "expected an object of channels")
    for c, kinds in channels.items():
        w = f"{where}.channels.{c}"
        _need(c.isdigit(), w, "expected a channel number")
        _need(isinstance(kinds, dict), w, "expected an object of explanation kinds")
        for kind, per in kinds.items():
            _need(isinstance(per, dict), f"{w}.{kind}", "expected an object of levels")
            for level, v in per.items():
                _need(isinstance(v, list) and len(v) == 4 and all(_is_num(x) for x in v) and all(0 <= x <= 1 for x in v[:3])
                      and _is_int(v[3]), f"{w}.{kind}.{level}", "expected [mean, low, high, n] with scores in [0, 1]")


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
        scores = data.get("score", {})
        _need(isinstance(scores, dict), f"{where}.score", "expected an object of layers")
        for layer, section in scores.items():
            _check_score(section, f"{where}.score.{layer}")
    except _Bad as e:
        raise UsageError(f"{e} (the file is damaged or not a featvis manifest); fix or remove it, choose another "
                         "--out, or pass --force to start over there") from None
    return data


def records_digest(section: dict) -> str:
    """What a layer's sheet shows: SHA-256 over its images' names, files and hashes, in order."""
    h = hashlib.sha256()
    for name, e in section.get("images", {}).items():
        h.update(f"{name}|{e['file']}|{e['sha256']}\n".encode())
    return h.hexdigest()


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
                    "runs": [], "layers": {}, "topk": {}, "score": {}}
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
        for layer, section in part.get("score", {}).items():
            have = merged["score"].get(layer)
            if have is None or section.get("recorded", 0) >= have.get("recorded", 0):
                merged["score"][layer] = section
    for section in merged["layers"].values():
        section["images"] = dict(sorted(section["images"].items(), key=lambda kv: image_order(kv[1])))
    return merged


class FolderRecords:
    """Reading and writing the records (a mixin of RenderFolder)."""

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

    def _need_writer(self):
        if self.writer is None:
            raise RuntimeError(f"{self}: writing needs the lock; use `with folder.lock(writer):`")
        if self._damage is not None:
            raise self._damage

    @staticmethod
    def _empty_part() -> dict:
        return {"featvis_manifest": MANIFEST_VERSION, "model": None, "weights": None, "settings": None,
                "runs": [], "layers": {}, "topk": {}}

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
        sec["images"] = dict(sorted(sec["images"].items(), key=lambda kv: image_order(kv[1])))
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

    def record_score(self, layer: str, record: dict) -> dict:
        """Record (replace) ``layer``'s interpretability scores (``featvis score``) in this writer's
        part, then merge. ``record["channels"]``: ``{channel: {kind: {level: [mean, low, high, n]}}}``."""
        self._need_writer()
        record = dict(record, recorded=time.time())
        self.part.setdefault("score", {})[layer] = record
        check_records(self.part, f"{PARTS}/{self.writer}.json")
        self._write_part(self.writer, self.part)
        return self.merge(sheets=[])

    def _write_part(self, writer: str, part: dict) -> None:
        text = dumps(part)
        self.write_file(f"{PARTS}/{writer}.json", lambda tmp: Path(tmp).write_text(text),
                        tag=writer if writer == self.writer else _FOLDER_TAG)
        _crash_point("part")
