"""Lazy packages: a package's public names are imported on first use, so that ``import featvis``
and the ``featvis`` command start at once (torch is imported by the first name that needs it)."""
import importlib
import importlib.util
import sys
import types
from typing import Dict, Iterable


def make_lazy(package: str, where: Dict[str, str], functions: Iterable[str] = ()) -> None:
    """Make the (already imported) module ``package`` lazy: ``package.NAME`` for ``NAME`` in
    ``where`` imports the submodule ``where[NAME]`` and returns its ``NAME``; any other submodule
    is imported when first named. Each name in ``functions`` stays that function although a
    submodule of the same name exists (``featvis.render``, ``featvis.models.wrap``): the import
    system sets a package's attribute to a submodule when it is first imported, by whichever
    module imports it first, and a property on the module's class ignores that."""
    module = sys.modules[package]

    def __getattr__(name):
        if name in where:
            value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
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
