"""Render jobs and the render folder: every channel of many layers, resumable, in shards, into one folder.

- :mod:`featvis.jobs.folder`: :class:`~featvis.jobs.folder.RenderFolder`, the one owner of ``--out``
  (paths and opening, records and schema, locks, derived sheets and manifest).
- :mod:`featvis.jobs.settings`: what decides a job's pixels (``Settings``, each batch's recipe and objective).
- :mod:`featvis.jobs.batches`: the job's units in a fixed order, cut into batches.
- :mod:`featvis.jobs.job`: ``prepare_job``/``ShardJob`` and the ``render`` and ``merge`` commands.
- :mod:`featvis.jobs.sheets`: ``featvis sheet``, and renders beside their dataset examples.
- :mod:`featvis.jobs.shard`, :mod:`featvis.jobs.launch`, :mod:`featvis.jobs.plan`: which shard this
  process is, SLURM arrays, ``featvis plan``.

A command that writes into a render folder goes through ``RenderFolder``; a new record type adds its
schema to :mod:`featvis.jobs.folder.records`.
"""
from ..lazy import make_lazy

_WHERE = {"RenderFolder": "folder", "prepare_job": "job", "prepare": "job", "ShardJob": "job", "merge": "job",
          "Settings": "settings", "unit_seed": "job"}
__all__ = list(_WHERE)

make_lazy(__name__, _WHERE)
