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
from .files import _FOLDER_TAG, _WRITER, MAIN, MANIFEST, MAX_RECORD_BYTES, PARTS, _crash_point, _relative

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


def _printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``): a hand-edited key stays on one line."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)


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


_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}$")  # a param, preset, format or device name
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: The longest free text a record may hold in one field (a model name, an objective, a version).
MAX_TEXT = 300


def _is_text(v, n: int = MAX_TEXT) -> bool:
    """A string of at most ``n`` characters without control characters (it is shown on pages and in
    terminals)."""
    return isinstance(v, str) and len(v) <= n and not any(ord(ch) < 32 or ord(ch) == 127 for ch in v)


def _need_int(v, where: str, low: int = 0, high: Optional[int] = None) -> None:
    upto = f" and at most {high}" if high is not None else ""
    _need(_is_int(v) and v >= low and (high is None or v <= high), where, f"expected a whole number at least {low}{upto}")


def _need_text(v, where: str, n: int = MAX_TEXT) -> None:
    _need(_is_text(v, n), where, f"expected a string of at most {n} characters without control characters")


def _check_weights(w, where: str) -> None:
    _need(isinstance(w, dict) and isinstance(w.get("spec"), str) and isinstance(w.get("sha256"), str),
          where, "expected {\"spec\": ..., \"sha256\": ...}")
    _need_text(w["spec"], f"{where}.spec", 4096)
    _need(_HEX64.match(w["sha256"]) is not None, f"{where}.sha256", "expected 64 hex digits")
    if w.get("file_sha256") is not None:
        _need(isinstance(w["file_sha256"], str) and _HEX64.match(w["file_sha256"]) is not None,
              f"{where}.file_sha256", "expected 64 hex digits")


#: The settings ``featvis render`` records, each with its check (a setting a newer featvis adds is
#: accepted as a short scalar; see :data:`ADDED_SETTINGS` for what older folders lack).
_SETTINGS = {
    "neurons": (lambda v: isinstance(v, bool), "true or false"),
    "size": (lambda v: _is_int(v) and 1 <= v <= 65536, "a whole number of pixels"),
    "steps": (lambda v: _is_int(v) and v >= 1, "a whole number at least 1"),
    "lr": (lambda v: _is_num(v) and v > 0, "a positive finite number"),
    "param": (lambda v: isinstance(v, str) and _TOKEN.match(v) is not None, "a param name such as fourier"),
    "diversity": (lambda v: _is_int(v) and 1 <= v <= 1024, "a whole number from 1 to 1024"),
    "diversity_weight": (lambda v: _is_num(v) and v >= 0, "a finite number, 0 or more"),
    "seed": (lambda v: _is_int(v) and 0 <= v < 2**64, "a non-negative whole number"),
    "format": (lambda v: isinstance(v, str) and _TOKEN.match(v) is not None, "an image format such as png"),
    "device": (lambda v: isinstance(v, str) and _TOKEN.match(v) is not None, "a device type such as cpu"),
    "deterministic": (lambda v: isinstance(v, bool), "true or false"),
    "preset": (lambda v: v is None or (isinstance(v, str) and _TOKEN.match(v) is not None), "a preset name or null"),
    "preset_revision": (lambda v: v is None or (_is_int(v) and 1 <= v < 2**31), "a whole number at least 1, or null"),
}


def _check_settings(settings, where: str) -> None:
    _need(isinstance(settings, dict), where, "expected an object")
    for key, value in settings.items():
        w = f"{where}.{key}"
        _need(_TOKEN.match(str(key)) is not None, w, "expected a setting name (letters, digits, _)")
        if key in _SETTINGS:
            ok, expected = _SETTINGS[key]
            _need(ok(value), w, f"expected {expected}, got {value!r:.80}")
        else:
            _need(value is None or isinstance(value, bool) or _is_num(value) or _is_text(value, 200), w,
                  "expected a number, true/false, null or a short string")


def _check_scalarish(value, where: str, depth: int = 0) -> None:
    """A run record's field: JSON scalars, and lists/objects of them (argv, versions)."""
    if value is None or isinstance(value, bool) or _is_num(value):
        return
    if isinstance(value, str):
        _need(len(value) <= 100_000, where, "expected a shorter string")
        return
    _need(depth < 3 and isinstance(value, (list, dict)), where, "expected a number, a string, or a list of them")
    for i, v in (enumerate(value) if isinstance(value, list) else value.items()):
        _check_scalarish(v, f"{where}[{i!r}]" if isinstance(value, list) else f"{where}.{i}", depth + 1)


def _check_images(images, where: str) -> None:
    _need(isinstance(images, dict), where, "expected an object of images")
    for name, e in images.items():
        w = f"{where}.{name}"
        _need(_is_text(name, 64), w, "expected an image name such as 3 or 3_1")
        _need(isinstance(e, dict), w, "expected an object")
        for key in ("channel", "k", "seed"):
            _need(_is_int(e.get(key)) and e[key] >= 0, f"{w}.{key}", "expected a non-negative integer")
        _need(e.get("value") is None or _is_num(e.get("value")), f"{w}.value", "expected a finite number")
        _check_rel(e.get("file"), f"{w}.file")
        _need(isinstance(e.get("sha256"), str) and _HEX64.match(e["sha256"]) is not None,
              f"{w}.sha256", "expected 64 hex digits")
        if "run" in e:
            _need(_is_int(e["run"]) and e["run"] >= 0, f"{w}.run", "expected a non-negative integer")
        for key in ("seconds", "diversity"):
            if key in e:
                _need(e[key] is None or _is_num(e[key]), f"{w}.{key}", "expected a finite number")
        if "negative" in e:
            _need(isinstance(e["negative"], bool), f"{w}.negative", "expected true or false")


def check_made_by(made, where: str) -> None:
    """The ``made_by`` of a record that pairs things (see :func:`made_by`)."""
    _need(isinstance(made, dict), where, "expected {\"model\": ..., \"weights\": {\"spec\", \"sha256\"}}")
    if made.get("model") is not None:
        _need_text(made["model"], f"{where}.model")
    _check_weights(made.get("weights"), f"{where}.weights")


def image_order(entry: dict) -> tuple:
    """How a layer's images are ordered: by channel, its maximizing images before its minimizing
    ones (``featvis render --negative``), then by k."""
    return entry["channel"], entry.get("negative") is True, entry["k"]


def _check_score(section, where: str) -> None:
    """A ``featvis score`` record of one layer (see :mod:`featvis.analysis.score`)."""
    _need(isinstance(section, dict), where, "expected an object")
    _need(isinstance(section.get("weights_sha256"), str), f"{where}.weights_sha256", "expected a string")
    if "made_by" in section:
        check_made_by(section["made_by"], f"{where}.made_by")
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
    if section.get("model") is not None:
        _need_text(section["model"], f"{where}.model")
    if "made_by" in section:
        check_made_by(section["made_by"], f"{where}.made_by")
    for key in ("k", "size"):
        if key in section:
            _need_int(section[key], f"{where}.{key}", 1)
    for key in ("images", "score"):
        if key in section:
            _need_text(section[key], f"{where}.{key}", 4096)
    if "recorded" in section:
        _need(_is_num(section["recorded"]), f"{where}.recorded", "expected a finite number")
    if "skipped" in section:
        _need(isinstance(section["skipped"], list), f"{where}.skipped", "expected a list")
        _check_scalarish(section["skipped"], f"{where}.skipped", 1)
    if "receptive_field" in section:
        _need(isinstance(section["receptive_field"], dict), f"{where}.receptive_field", "expected an object")
        _check_scalarish(section["receptive_field"], f"{where}.receptive_field", 1)
    for c, recs in channels.items():
        _need(str(c).isdigit() and len(str(c)) <= 9, f"{where}.channels.{c}", "expected a channel number")
        _need(isinstance(recs, list), f"{where}.channels.{c}", "expected a list")
        for i, r in enumerate(recs):
            w = f"{where}.channels.{c}[{i}]"
            _need(isinstance(r, dict), w, "expected an object")
            _check_rel(r.get("crop"), f"{w}.crop")
            _need(_is_num(r.get("value")), f"{w}.value", "expected a finite number")
            if "rank" in r:
                _need_int(r["rank"], f"{w}.rank")
            if "image" in r:
                _need_text(r["image"], f"{w}.image", 4096)
            for key, n in (("position", 2), ("box", 4)):
                if key in r:
                    _need(isinstance(r[key], list) and len(r[key]) == n and all(_is_int(v) for v in r[key]),
                          f"{w}.{key}", f"expected {n} whole numbers")


def _check_job(job, where: str) -> None:
    _need(isinstance(job, dict), where, "expected an object")
    _need(isinstance(job.get("layers"), dict), f"{where}.layers", "expected an object of layers")
    for layer, spec in job["layers"].items():
        _check_rel(layer, f"{where}.layers")
        _need_text(spec, f"{where}.layers.{layer}", 100_000)
        from ...units import ChannelSpec
        try:
            ChannelSpec.parse(spec)
        except ValueError as e:
            raise _Bad(f"{where}.layers.{layer}: {e}") from None
    _need_int(job.get("batch"), f"{where}.batch", 1)
    _need_int(job.get("shards"), f"{where}.shards", 1)


def _check_atlas(section, where: str) -> None:
    """An activation atlas of one layer (``featvis atlas --record``): its image and its cells."""
    _need(isinstance(section, dict), where, "expected an object")
    _check_rel(section.get("image"), f"{where}.image")
    _need(_is_int(section.get("grid")) and section["grid"] > 0, f"{where}.grid", "expected a positive integer")
    _need(section.get("class") is None or (_is_int(section["class"]) and section["class"] >= 0), f"{where}.class",
          "expected a non-negative integer or null")
    cells = section.get("cells")
    _need(isinstance(cells, list), f"{where}.cells", "expected a list of cells")
    for i, c in enumerate(cells):
        w = f"{where}.cells[{i}]"
        _need(isinstance(c, dict), w, "expected an object")
        for key in ("x", "y"):
            _need(_is_int(c.get(key)) and 0 <= c[key] < section["grid"], f"{w}.{key}", "expected a cell of the grid")
        _need(_is_int(c.get("n")) and c["n"] >= 0, f"{w}.n", "expected a non-negative integer")
        _need(_is_num(c.get("weight")), f"{w}.weight", "expected a finite number")
        _need(isinstance(c.get("units"), list) and all(_is_int(u) and u >= 0 for u in c["units"]), f"{w}.units",
              "expected a list of channels")
        _check_rel(c.get("file"), f"{w}.file")


def check_records(data, where: str) -> dict:
    """Check a part or a manifest (version 1 or 2) field by field; returns it, or raises
    :class:`UsageError` naming the file and the first malformed field. A version newer than this
    featvis reads is said to be one (not "damaged": it is not, and ``--force`` would discard it)."""
    if isinstance(data, dict) and _is_int(data.get("featvis_manifest")) and data["featvis_manifest"] > MANIFEST_VERSION:
        from ... import __version__
        raise UsageError(f"{where} was written by a newer featvis (manifest version {data['featvis_manifest']}; "
                         f"featvis {__version__} reads versions up to {MANIFEST_VERSION}); upgrade featvis "
                         "(pip install -U featvis) to read or add to it, or choose another --out")
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
            _need_text(data["model"], f"{where}.model")
        if data.get("weights") is not None:
            _check_weights(data["weights"], f"{where}.weights")
        if data.get("settings") is not None:
            _check_settings(data["settings"], f"{where}.settings")
        for key in ("featvis", "torch", "device"):
            if data.get(key) is not None:
                _need_text(data[key], f"{where}.{key}")
        if data.get("writer") is not None:
            _need(isinstance(data["writer"], str) and _WRITER.match(data["writer"]) is not None, f"{where}.writer",
                  "expected a writer id such as main or shard-0-of-4")
        runs = data.get("runs", [])
        _need(isinstance(runs, list), f"{where}.runs", "expected a list")
        for i, run in enumerate(runs):
            _need(isinstance(run, dict), f"{where}.runs[{i}]", "expected an object (a run record)")
            _check_scalarish(run, f"{where}.runs[{i}]")
        if "failed" in data:
            failed = data["failed"]
            _need(isinstance(failed, dict), f"{where}.failed", "expected an object {unit: message}")
            for unit, message in failed.items():
                _need(_is_text(unit, 200) and _is_text(message, 2000), f"{where}.failed.{unit}",
                      "expected a message (a string)")
        if "job" in data:
            _check_job(data["job"], f"{where}.job")
        layers = data.get("layers", {})
        _need(isinstance(layers, dict), f"{where}.layers", "expected an object of layers")
        for layer, section in layers.items():
            w = f"{where}.layers.{layer}"
            _need(isinstance(section, dict), w, "expected an object")
            _check_rel(layer, w)
            _check_images(section.get("images"), f"{w}.images")
            if "channels" in section:
                _need(_is_int(section["channels"]) and section["channels"] > 0, f"{w}.channels", "expected a positive integer")
            if section.get("objective") is not None:
                _need_text(section["objective"], f"{w}.objective", 4096)
        topk = data.get("topk", {})
        _need(isinstance(topk, dict), f"{where}.topk", "expected an object of layers")
        for layer, section in topk.items():
            _check_rel(layer, f"{where}.topk")
            _check_topk(section, f"{where}.topk.{layer}")
        atlas = data.get("atlas", {})
        _need(isinstance(atlas, dict), f"{where}.atlas", "expected an object of layers")
        for layer, section in atlas.items():
            _check_atlas(section, f"{where}.atlas.{layer}")
        scores = data.get("score", {})
        _need(isinstance(scores, dict), f"{where}.score", "expected an object of layers")
        for layer, section in scores.items():
            _check_score(section, f"{where}.score.{layer}")
    except _Bad as e:
        raise UsageError(f"{_printable(str(e))} (the file is damaged or not a featvis manifest); fix or remove it, "
                         "choose another --out, or pass --force to start over there") from None
    return data


# --- records that pair things: who made them ----------------------------------------------------------

def made_by(model: Optional[str], weights_sha256: str, spec: Optional[str] = None) -> dict:
    """The ``made_by`` field of a record that pairs a folder's renders with something else (top-k
    examples, circuits, scores): the model's name and the digest of its weights
    (:func:`featvis.models.weights.weights_digest`, what ``featvis render`` records as
    ``weights.sha256``). :meth:`FolderRecords.check_made_by` refuses such a record in a folder of
    another model or other weights."""
    return {"model": model, "weights": {"spec": str(spec) if spec is not None else "unknown", "sha256": weights_sha256}}


def made_by_net(model_name: Optional[str], net, spec: Optional[str] = None) -> dict:
    """:func:`made_by` for a loaded network (its weights' digest is computed here)."""
    from ...models.weights import weights_digest
    return made_by(model_name, weights_digest(net), spec)


def made_by_differences(a: dict, b: dict) -> List[str]:
    """How two ``made_by`` (or a header's model and weights) differ; ``[]`` when the same or unknown."""
    diffs = []
    if a.get("model") and b.get("model") and a["model"] != b["model"]:
        diffs.append(f"model {a['model']} vs {b['model']}")
    sa, sb = (a.get("weights") or {}).get("sha256"), (b.get("weights") or {}).get("sha256")
    if sa and sb and sa != sb:
        diffs.append(f"weights sha256 {sa[:12]} vs {sb[:12]}")
    return diffs


# --- circuit records: <layer>/circuits/<channel>.json -----------------------------------------------

def circuit_rel(layer: str, channel: int) -> str:
    """Where the circuit record of ``layer:channel`` lives, relative to the folder."""
    return f"{layer}/circuits/{int(channel)}.json"


def check_circuit(data, where: str) -> dict:
    """Check a circuit record field by field (``{"unit", "from", "inputs": [{"channel", "norm",
    "sign", "heatmap"}], "made_by"?}``); :class:`UsageError` naming the file and field otherwise."""
    try:
        _need(isinstance(data, dict), where, "expected a JSON object")
        _need_text(data.get("unit"), f"{where}.unit")
        _check_rel(data.get("from"), f"{where}.from")
        if "made_by" in data:
            check_made_by(data["made_by"], f"{where}.made_by")
        inputs = data.get("inputs")
        _need(isinstance(inputs, list), f"{where}.inputs", "expected a list")
        for i, u in enumerate(inputs):
            w = f"{where}.inputs[{i}]"
            _need(isinstance(u, dict), w, "expected an object")
            _need_int(u.get("channel"), f"{w}.channel")
            _need(_is_num(u.get("norm")), f"{w}.norm", "expected a finite number")
            _need(u.get("sign", "") in ("", "excitatory", "inhibitory"), f"{w}.sign",
                  "expected excitatory or inhibitory")
            if u.get("heatmap") is not None:
                _check_rel(u["heatmap"], f"{w}.heatmap")
    except _Bad as e:
        raise UsageError(f"{_printable(str(e))} (the file is damaged or not a featvis circuit record); fix or remove it, or record "
                         "it again: featvis circuit ... --record DIR") from None
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
ADDED_SETTINGS = {"deterministic": True, "preset": None, "preset_revision": None}


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
        after = ns.get(key, ADDED_SETTINGS.get(key))
        if before != after and key == "preset_revision":
            diffs.append(f"preset {ns.get('preset')} revision {before or '1 (or unrecorded)'} -> {after or 1} "
                         "(the recipe changed between featvis versions; this one cannot repeat the other revision)")
        elif before != after:
            diffs.append(f"{key} {before} -> {ns.get(key)}")
    return diffs


def has_images(part: dict) -> bool:
    """Whether a part records any rendered image."""
    return any(sec.get("images") for sec in (part.get("layers") or {}).values())


def _claim_only(part: dict) -> bool:
    """A part that claims settings but records no image yet: a writer between its claim and its
    first batch (or one killed there)."""
    return part.get("settings") is not None and not has_images(part)


#: Records kept per layer, the newest of each winning a merge: ``featvis topk``, ``featvis atlas
#: --record``, ``featvis score``.
_LAYER_RECORDS = ("topk", "atlas", "score")


def merge_records(parts: Dict[str, dict]) -> dict:
    """One manifest from the parts (``{writer: part}``): their image records united (run indices
    renumbered over the concatenated runs), the newest top-k record of each layer. Parts that
    record renders must agree on model, weights and settings (else :class:`UsageError`)."""
    merged: dict = {"featvis_manifest": MANIFEST_VERSION, "model": None, "weights": None, "settings": None,
                    "runs": [], "layers": {}, "topk": {}, "score": {}}
    owner = None
    for writer in sorted(parts, key=lambda w: (_claim_only(parts[w]), w != MAIN, w)):
        part = parts[writer]
        if part.get("settings") is not None:
            if owner is not None and _claim_only(part):
                pass  # a claim without images adds nothing to the merge (claim() compares claims)
            elif owner is None:
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
        for kind in _LAYER_RECORDS:  # the newest record of each kind and layer
            for layer, section in part.get(kind, {}).items():
                have = merged.setdefault(kind, {}).get(layer)
                if have is None or section.get("recorded", 0) >= have.get("recorded", 0):
                    merged[kind][layer] = section
    for section in merged["layers"].values():
        section["images"] = dict(sorted(section["images"].items(), key=lambda kv: image_order(kv[1])))
    return merged


class FolderRecords:
    """Reading and writing the records (a mixin of RenderFolder)."""

    # --- reading -------------------------------------------------------------------------------------

    def _load(self, rel: str, where: Optional[str] = None, check=None) -> dict:
        """A record file read through the folder's opener (contained, regular, bounded), parsed
        as strict JSON and checked (``check``, default :func:`check_records`)."""
        where = where or rel
        try:
            text = self.read_text(rel, "a featvis record", MAX_RECORD_BYTES)
        except UsageError as e:
            raise UsageError(f"{e}; or choose another --out, or pass --force to start over there") from None
        try:
            data = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not JSON")))
        except ValueError as e:
            raise UsageError(f"{self.path(rel)} is not valid JSON ({e}); fix or remove it, choose another --out, or "
                             "pass --force to start over there") from None
        except RecursionError:
            raise UsageError(f"{self.path(rel)} nests too deeply to be a featvis record; fix or remove it") from None
        return (check or check_records)(data, where)

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
            return {w: self._load(f"{PARTS}/{w}.json") for w in names}
        legacy = self.root / MANIFEST
        if legacy.is_file():
            data = self._load(MANIFEST)
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
        before_claim = json.loads(dumps(self.part)) if self.writer in self.part_names() else None
        with self._folder_lock():
            if force:
                parts = {}
                for w in self.part_names():
                    try:
                        parts[w] = self._load(f"{PARTS}/{w}.json")
                    except UsageError as e:  # damaged: its file names are not trusted, nothing is deleted for it
                        if "newer featvis" in str(e):  # not damage: --force must not discard it
                            raise
                        print(f"featvis: {e}; starting over without it", file=sys.stderr)
                        self._delete(f"{PARTS}/{w}.json")
                if not parts and (self.root / MANIFEST).is_file():
                    try:
                        parts = self.read_parts()
                    except UsageError as e:
                        if "newer featvis" in str(e):  # not damage: --force must not discard it
                            raise
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
                    if _claim_only(p) and (w == self.writer or not self._writer_alive(w)):
                        continue  # a claim whose writer was killed before its first batch
                    diffs = header_differences(p, header)
                    if diffs:
                        busy = " (a writer starting now)" if _claim_only(p) else ""
                        raise UsageError(f"{self.root} holds renders made with other settings{busy} "
                                         f"({'; '.join(diffs)}); repeat those settings to resume, choose another "
                                         "--out, or pass --force to start over there")
            made = {"model": header.get("model"), "weights": header.get("weights") or {}}
            for what, other in self._pairing_records(parts):
                diffs = made_by_differences(other, made)
                if diffs:
                    raise UsageError(f"{self.root} holds {what} made by another network ({'; '.join(diffs)}); "
                                     "they would be shown beside renders of this one: choose another --out")
            if force and (deleted or self.part_names() or (self.root / MANIFEST).exists()):  # the reset itself
                self._write_part(self.writer, self.part)
                self._merge_locked([])
            self.part.update({k: v for k, v in header.items() if k not in ("layers", "topk", "runs")})
            if not has_images(self.part):
                # The claim is written now, under the folder lock, so that a writer starting at the
                # same time with other settings is refused before either renders a batch. It is
                # taken back when the lock is released without images (lock()); one a killed writer
                # left counts no more than its lock is held.
                keep = before_claim is not None and not _claim_only(before_claim)
                self._claim_undo = ("keep", before_claim) if keep else ("drop", None)
                self._write_part(self.writer, self.part)
        return deleted

    def _release_claim(self) -> None:
        """Take back this writer's claim if it recorded no image (see :meth:`claim`)."""
        undo, self._claim_undo = getattr(self, "_claim_undo", None), None
        if undo is None or self.part is None or has_images(self.part):
            return
        with self._folder_lock():
            if undo[0] == "drop":
                self._delete(f"{PARTS}/{self.writer}.json")
            else:
                self._write_part(self.writer, undo[1])
            if (self.root / MANIFEST).exists():
                self._merge_locked([])

    def _pairing_records(self, parts: Dict[str, dict], skip: Optional[tuple] = None):
        """``(what, made_by)`` of every record in the folder that pairs things with its renders
        (but the circuit ``skip`` = (layer, channel), which is being replaced)."""
        for w, p in parts.items():
            for layer, sec in (p.get("topk") or {}).items():
                if isinstance(sec.get("made_by"), dict):
                    yield f"the top-k examples of {layer}", sec["made_by"]
        for w, p in parts.items():
            for layer, sec in (p.get("score") or {}).items():
                if isinstance(sec.get("made_by"), dict):
                    yield f"the interpretability scores of {layer}", sec["made_by"]
        for (layer, c), rec in self.read_circuits(skip).items():
            if isinstance(rec.get("made_by"), dict):
                yield f"the circuit of {layer}:{c}", rec["made_by"]

    def check_made_by(self, made: dict, what: str, parts: Optional[Dict[str, dict]] = None,
                      replacing: Optional[tuple] = None) -> None:
        """Refuse (:class:`UsageError`) to record ``what`` (made by ``made``, see :func:`made_by`)
        in this folder if its renders, or other pairing records, were made by another model or
        other weights. Every record writer that pairs things calls this before writing."""
        parts = self.read_parts() if parts is None else parts
        header = merge_records(parts) if parts else {}
        if header.get("settings") is not None:
            diffs = made_by_differences({"model": header.get("model"), "weights": header.get("weights") or {}}, made)
            if diffs:
                raise UsageError(f"{self.root} holds renders of another network than {what} ({'; '.join(diffs)}); "
                                 "write them to the render folder of that network, or another --out")
        for other_what, other in self._pairing_records(parts, replacing):
            diffs = made_by_differences(other, made)
            if diffs:
                raise UsageError(f"{self.root} holds {other_what} made by another network than {what} "
                                 f"({'; '.join(diffs)}); choose another --out")

    def read_circuits(self, skip: Optional[tuple] = None) -> Dict[tuple, dict]:
        """``{(layer, channel): record}``: every circuit record ``<layer>/circuits/<channel>.json``,
        read through the opener and checked (:func:`check_circuit`); ``skip``: (layer, channel) not read."""
        out = {}
        if not self.root.is_dir():
            return out
        for f in sorted(self.root.glob("*/circuits/*.json")):
            if not f.stem.isdigit() or len(f.stem) > 9:
                continue
            layer = f.parent.parent.name
            if (layer, int(f.stem)) == skip:
                continue
            rel = circuit_rel(layer, int(f.stem))
            out[(layer, int(f.stem))] = self._load(rel, rel, check_circuit)
        return out

    def record_circuit(self, layer: str, channel: int, record: dict, made: Optional[dict] = None) -> Path:
        """Write the circuit record of ``layer:channel`` (heatmaps already saved with
        :meth:`save_image`) atomically, after checking it and that ``made`` (:func:`made_by`) is
        the network of this folder's other records. Needs the lock. Returns its path."""
        self._need_writer()
        rel = circuit_rel(layer, channel)
        if made is not None:
            record = dict(record, made_by=made)
        check_circuit(record, rel)
        if made is not None:
            self.check_made_by(made, f"the circuit of {layer}:{channel}", replacing=(layer, int(channel)))
        text = dumps(record)
        return self.write_file(rel, lambda tmp: Path(tmp).write_text(text))

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
        ``record["channels"]``: ``{channel: [{"rank", "value", "crop", ...}, ...]}``;
        ``record["made_by"]`` (:func:`made_by`): the network that chose them, refused when the
        folder's renders or other records come from another (:meth:`check_made_by`)."""
        return self._record_layer("topk", layer, record, f"the top-k examples of {layer}")

    def record_atlas(self, layer: str, record: dict) -> dict:
        """Record (replace) ``layer``'s activation atlas in this writer's part, then merge.
        ``record``: ``{"image", "grid", "class", "cells": [{"x", "y", "n", "weight", "units",
        "file"}, ...], ...}`` with its files already written (``featvis atlas --record``)."""
        return self._record_layer("atlas", layer, record)

    def record_score(self, layer: str, record: dict) -> dict:
        """Record (replace) ``layer``'s interpretability scores (``featvis score``) in this writer's
        part, then merge. ``record["channels"]``: ``{channel: {kind: {level: [mean, low, high, n]}}}``."""
        return self._record_layer("score", layer, record)

    def _record_layer(self, kind: str, layer: str, record: dict, pairs: Optional[str] = None) -> dict:
        """Record (replace) ``layer``'s ``kind`` record in this writer's part, checked, then merge.
        ``pairs``: what the record pairs with the folder's renders (its ``made_by`` is then checked
        against them and the other pairing records, :meth:`check_made_by`)."""
        self._need_writer()
        record = dict(record, recorded=time.time())
        if pairs is not None and isinstance(record.get("made_by"), dict):
            parts = self.read_parts()
            parts.get(self.writer, {}).get(kind, {}).pop(layer, None)  # the record it replaces pairs nothing
            self.check_made_by(record["made_by"], pairs, parts)
        self.part.setdefault(kind, {})[layer] = record
        check_records(self.part, f"{PARTS}/{self.writer}.json")
        self._write_part(self.writer, self.part)
        return self.merge(sheets=[])

    def _write_part(self, writer: str, part: dict) -> None:
        text = dumps(part)
        self.write_file(f"{PARTS}/{writer}.json", lambda tmp: Path(tmp).write_text(text),
                        tag=writer if writer == self.writer else _FOLDER_TAG)
        _crash_point("part")
