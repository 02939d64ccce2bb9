"""A package whose names are imported on first use (PEP 562), so that importing one of its modules
does not import all the others (and torch) through the package's ``__init__``.

    # detseg/engine/__init__.py
    _NAMES = {"train": "run", "load_model": "loader"}   # name -> the submodule defining it
    __all__ = list(_NAMES)
    lazy_names(__name__, _NAMES)
"""

from __future__ import annotations

import importlib
import sys
import types


class _LazyPackage(types.ModuleType):
    """A package module that looks its listed names up in their submodules, and keeps a name that is
    also a submodule's (``detseg.transfer.freeze``, the function) from becoming that submodule when
    it is imported: the import system sets a package's attribute to each submodule it loads."""

    _lazy_names: dict[str, str]

    def __getattr__(self, name: str):
        names = self.__dict__.get("_lazy_names", {})
        if name not in names:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{self.__name__}.{names[name]}"), name)

    def __setattr__(self, name: str, value) -> None:
        if not (name in self.__dict__.get("_lazy_names", {}) and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*self.__dict__, *self.__dict__.get("_lazy_names", {})})


def lazy_names(package: str, names: dict[str, str]) -> None:
    """Make the package ``package`` (its ``__name__``) give each of ``names`` (name -> submodule) on
    first use."""
    module = sys.modules[package]
    module.__class__ = _LazyPackage
    module._lazy_names = dict(names)
