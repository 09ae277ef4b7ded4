"""``Objective``: a per-image score to maximize, with ``+ - * /`` algebra and the layers it reads."""
from __future__ import annotations

import functools
import numbers
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple, Union

import torch

from ..hooks import INPUT

Acts = Dict[str, torch.Tensor]
#: image index (None: every image) -> the units it optimizes
Units = Dict[Optional[int], Tuple[str, ...]]

# Precedence for printing names with the parentheses they need.
_ATOM, _MUL, _ADD = 3, 2, 1


class Objective:
    """A function of the captured activations that returns one value per image, shape (B,).

    ``layers`` is the set of layer names it reads (``"input"`` is the image itself, before the
    transforms); ``name`` reads like the expression that built it; ``batch_size`` is the smallest
    batch it needs (from ``batch=i`` narrowing), or ``None``.

    Objectives compose like numbers: ``channel("mixed4a", 476) - 0.05 * total_variation()``,
    ``sum(channel("mixed4a", c, batch=i) for i, c in enumerate(cs))``.
    """

    def __init__(self, fn: Callable[[Acts], torch.Tensor], layers: Iterable[str], name: str,
                 batch_size: Optional[int] = None, precedence: int = _ATOM, binders: Tuple[Callable, ...] = (),
                 units: Optional[Units] = None):
        self.fn = fn
        self.layers: FrozenSet[str] = frozenset(layers)
        self.name = name
        self.batch_size = batch_size
        self._prec = precedence
        self.binders = tuple(binders)
        #: named parts whose values :func:`featvis.render` reports next to the total (Result.terms)
        self.terms: Dict[str, "Objective"] = {}
        #: the units it optimizes, by image: ``{i: ("mixed4a:476",)}``, ``{None: (...)}`` for every
        #: image; what :meth:`image_labels` (and so ``Result.labels``) reads. Penalties name none.
        self.units: Units = dict(units or {})

    def bind(self, shapes: Dict[str, Tuple[int, ...]]) -> "Objective":
        """Tell the leaves the shapes ``{layer: (C, H, W)}`` of the layers for the *bare* image
        (untransformed, at the size being rendered). :func:`featvis.render` calls it before the
        first step: a neuron's ``@x,y`` index the bare image's map, and during optimization, when
        the model sees a padded and jittered canvas with a larger map, the neuron maps them onto
        it (shifted by half the difference: the padding scaled by the layer's stride)."""
        for bind in self.binders:
            bind(shapes)
        return self

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.fn(acts)

    def __repr__(self):
        return f"<Objective {self.name}>"

    def image_labels(self, n: int) -> List[str]:
        """One label per image of a batch of ``n``: the units image i optimizes, joined by " + "
        (``"curves:2"``, ``"mixed4a:476 + mixed4a:465"``), or "" where it names none."""
        everyone = self.units.get(None, ())
        return [" + ".join(dict.fromkeys(everyone + self.units.get(i, ()))) for i in range(n)]

    def _repr_html_(self) -> str:
        """In Jupyter: the expression, the layers it reads, its batch size, units and named terms."""
        from ..display import html_table
        rows = [("objective", self.name), ("reads", ", ".join(sorted(self.layers)) or "-"),
                ("batch", self.batch_size if self.batch_size is not None else "any")]
        rows += [(f"image {i}" if i is not None else "every image", " + ".join(u))
                 for i, u in sorted(self.units.items(), key=lambda kv: -1 if kv[0] is None else kv[0])]
        rows += [(f"term {k}", t.name) for k, t in self.terms.items()]
        return html_table(rows)

    # --- algebra -----------------------------------------------------------------------------
    def _wrapped(self, prec):
        return f"({self.name})" if self._prec < prec else self.name

    @staticmethod
    def _join(a, b):
        sizes = [s for s in (a, b) if s is not None]
        return max(sizes) if sizes else None

    def _binary(self, other, op, symbol, prec, reverse=False):
        if isinstance(other, Objective):
            left, right = (other, self) if reverse else (self, other)
            fn = lambda acts: op(left(acts), right(acts))  # noqa: E731
            # Right operand of - and / binds tighter: a - (b + c).
            name = f"{left._wrapped(prec)} {symbol} {right._wrapped(prec + 1 if symbol in '-/' else prec)}"
            return Objective(fn, left.layers | right.layers, name, self._join(left.batch_size, right.batch_size), prec,
                             left.binders + right.binders, _merge_units(left.units, right.units))
        if isinstance(other, numbers.Number) and not isinstance(other, bool):
            c = float(other)
            if reverse:
                fn = lambda acts: op(c, self(acts))  # noqa: E731
                name = f"{_fmt(c)} {symbol} {self._wrapped(prec + 1 if symbol in '-/' else prec)}"
            else:
                fn = lambda acts: op(self(acts), c)  # noqa: E731
                name = f"{self._wrapped(prec)} {symbol} {_fmt(c)}"
            return Objective(fn, self.layers, name, self.batch_size, prec, self.binders, self.units)
        return NotImplemented

    def __add__(self, o): return self._binary(o, lambda a, b: a + b, "+", _ADD)  # noqa: E704
    def __radd__(self, o):
        if isinstance(o, numbers.Number) and o == 0:  # sum([...]) starts from 0
            return self
        return self._binary(o, lambda a, b: a + b, "+", _ADD, reverse=True)
    def __sub__(self, o): return self._binary(o, lambda a, b: a - b, "-", _ADD)  # noqa: E704
    def __rsub__(self, o): return self._binary(o, lambda a, b: a - b, "-", _ADD, reverse=True)  # noqa: E704
    def __mul__(self, o): return self._binary(o, lambda a, b: a * b, "*", _MUL)  # noqa: E704
    def __rmul__(self, o): return self._binary(o, lambda a, b: a * b, "*", _MUL, reverse=True)  # noqa: E704
    def __truediv__(self, o): return self._binary(o, lambda a, b: a / b, "/", _MUL)  # noqa: E704
    def __rtruediv__(self, o): return self._binary(o, lambda a, b: a / b, "/", _MUL, reverse=True)  # noqa: E704

    def __neg__(self):
        return Objective(lambda acts: -self(acts), self.layers, f"-{self._wrapped(_MUL + 1)}", self.batch_size, _MUL,
                         self.binders, self.units)

    def __pos__(self):
        return self


def _fmt(c: float) -> str:
    return f"{c:g}"


def _merge_units(a: "Units", b: "Units") -> "Units":
    out = dict(a)
    for i, names in b.items():
        out[i] = tuple(dict.fromkeys(out.get(i, ()) + names))
    return out


def image_units(units: Union[None, str, Sequence[str]], batch=None) -> "Units":
    """``Objective.units`` of a leaf: ``units`` (one name for every image, or one per image) placed
    on the images ``batch`` names (``batch=[2, 3]`` with two names: image 2 the first, 3 the second)."""
    if units is None:
        return {}
    idx = None if batch is None else ([int(batch)] if isinstance(batch, numbers.Integral) else [int(i) for i in batch])
    if isinstance(units, str):
        return {None: (units,)} if idx is None else {i: (units,) for i in idx}
    units = list(units)
    if idx is None:
        return {i: (u,) for i, u in enumerate(units)}
    if len(units) == len(idx):
        return {i: (u,) for i, u in zip(idx, units)}
    return {i: tuple(units) for i in idx}


@functools.lru_cache(maxsize=1024)
def index_tensor(indices: Tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A long tensor of ``indices`` on ``device``, made once: objectives run every step, and a new
    host-to-GPU copy each step would make the host wait for the GPU."""
    return torch.tensor(indices, dtype=torch.long, device=device)


def narrow(fn: Callable[[Acts], torch.Tensor], batch: Union[None, int, Sequence[int]]):
    """Restrict a per-image objective to image(s) ``batch``; other images get 0.

    Returns ``(fn, batch_size)``, where ``batch_size`` is the smallest batch that has those images.
    """
    if batch is None:
        return fn, None
    idx = [batch] if isinstance(batch, numbers.Integral) else [int(i) for i in batch]
    if not idx or min(idx) < 0:
        raise ValueError(f"batch={batch!r}: image indices must be non-negative integers")

    def narrowed(acts: Acts) -> torch.Tensor:
        B = next(iter(acts.values())).shape[0]
        if max(idx) >= B:
            raise ValueError(
                f"objective names batch={batch!r} but the image batch has {B} image(s); "
                f"make the param with batch={max(idx) + 1} or more")
        if len(idx) == 1:  # a view, not a copy
            i = idx[0]
            sub = {k: v[i:i + 1] for k, v in acts.items()}
        else:
            sub = {k: v[idx] for k, v in acts.items()}
        vals = fn(sub)
        out = vals.new_zeros(B)
        return out.index_copy(0, index_tensor(tuple(idx), vals.device), vals)

    return narrowed, max(idx) + 1


def objective(layers: Iterable[str], name: str, batch=None, units: Union[None, str, Sequence[str]] = None):
    """Decorator for a leaf: ``@objective([layer], "channel(l:3)")`` over ``fn(acts) -> (B,)``.
    ``units``: what it optimizes, for labels (``"l:3"``, or one name per image; see :func:`image_units`)."""
    def deco(fn):
        f, size = narrow(fn, batch)
        label = name if batch is None else f"{name}[batch={batch}]"
        return Objective(f, layers, label, size, units=image_units(units, batch))
    return deco


def scaled(objective: Objective, term: Objective, weight: float, group: int = 1, label: str = "penalty") -> Objective:
    """``objective + weight * |objective| * term``, with ``|objective|`` held constant (no gradient)
    and averaged over each ``group`` of consecutive images: the term's weight follows the
    objective's own size, so that one ``weight`` means the same on any model and unit (Lucid's
    users tuned a fixed weight by hand per model: ``channel - 1e2 * diversity``). With ``term``
    in [-1, 0] (diversity) or [0, 1] (alpha), ``weight`` is the share of the objective that the term
    can cost. The result's ``terms`` are ``{"objective": objective, label: the weighted term}``,
    which :func:`featvis.render` reports separately in ``Result.terms``.

    >>> obj = scaled(channel("mixed4a", [97] * 4), diversity("mixed4a"), 0.5, group=4, label="diversity")
    """
    weight, group = float(weight), int(group)

    def parts(acts):
        v = objective(acts)  # (B,)
        size = v.detach().abs()
        if group > 1:
            size = size.view(-1, group).mean(1).repeat_interleave(group)
        return v, weight * size * term(acts)

    def total(acts):
        v, t = parts(acts)
        return v + t

    layers = objective.layers | term.layers
    size = Objective._join(objective.batch_size, term.batch_size)
    name = f"{objective._wrapped(_ADD)} + {_fmt(weight)}*|objective|*{term._wrapped(_MUL + 1)}"
    out = Objective(total, layers, name, size, _ADD, objective.binders + term.binders, objective.units)
    part = Objective(lambda acts: parts(acts)[1], layers, f"{_fmt(weight)}*|objective|*{term.name}", size, _MUL,
                     objective.binders + term.binders)
    out.terms = {"objective": objective, label: part}
    return out


__all__ = ["Objective", "objective", "narrow", "index_tensor", "scaled", "image_units", "INPUT"]
