"""Lazy packages: a package's public names are imported on first use, so that ``import featvis``
and the ``featvis`` command start at once (torch is imported by the first name that needs it).

Also the old import paths of modules that moved (``featvis.metrics`` now lives in
``featvis.analysis.metrics``): ``import featvis.metrics`` and ``from featvis.metrics import x``
give the module at its new home, the same object, so a user's scripts keep working."""
import importlib
import importlib.util
import sys
import types
from typing import Dict, Iterable, Optional

#: old dotted name -> new dotted name, for every package made lazy with ``moved=``
_MOVED: Dict[str, str] = {}


def _find_spec(fullname, path=None, target=None):
    return importlib.util.spec_from_loader(fullname, _FINDER) if fullname in _MOVED else None


def _exec_module(module):
    sys.modules[module.__name__] = importlib.import_module(_MOVED[module.__name__])


#: A meta path finder and loader of moved modules (by protocol: a class, or importlib.abc, would
#: cost every ``import featvis``): it finds a moved module under its old name, and loading it puts
#: the module of the new name in its place (the import system then returns what ``sys.modules``
#: holds under the old name: the same module object).
_FINDER = types.SimpleNamespace(find_spec=_find_spec, create_module=lambda spec: None, exec_module=_exec_module)


def make_lazy(package: str, where: Dict[str, str], functions: Iterable[str] = (),
              moved: Optional[Dict[str, str]] = None) -> None:
    """Make the (already imported) module ``package`` lazy: ``package.NAME`` for ``NAME`` in
    ``where`` imports the submodule ``where[NAME]`` and returns its ``NAME``; any other submodule
    is imported when first named. Each name in ``functions`` stays that function although a
    submodule of the same name exists (``featvis.render``, ``featvis.models.wrap``): the import
    system sets a package's attribute to a submodule when it is first imported, by whichever
    module imports it first, and a property on the module's class ignores that. ``moved``:
    ``{old submodule: its new dotted path in the package}``, reachable by both names."""
    module = sys.modules[package]
    moved = dict(moved or {})
    _MOVED.update({f"{package}.{old}": f"{package}.{new}" for old, new in moved.items()})
    if moved and _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)

    def __getattr__(name):
        if name in where:
            value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        elif name in moved:
            value = importlib.import_module(f"{package}.{moved[name]}")
        elif not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module.__dict__[name] = value
        return value

    def __dir__():
        return sorted(set(module.__dict__) | set(getattr(module, "__all__", ())) | set(where))

    def keep(name):
        return property(lambda self: getattr(importlib.import_module(f"{package}.{name}"), name),
                        lambda self, value: None)  # the submodule, set by the import system: ignored

    module.__getattr__, module.__dir__ = __getattr__, __dir__
    module.__class__ = type("LazyPackage", (types.ModuleType,), {name: keep(name) for name in functions})


__all__ = ["make_lazy"]
