"""Modules imported on first use, so that `import mfparse` and listing a file never pay for them.

`from mfparse._lazy import numpy as np` gives an object that imports numpy the first time one
of its attributes is read, then behaves as the module (each attribute is looked up once and
kept). It is not put in sys.modules: `"numpy" in sys.modules` stays a true statement about
whether numpy was imported.
"""

from __future__ import annotations

import importlib


class LazyModule:
    """Stands in for a module until an attribute is needed."""

    def __init__(self, name: str):
        self.__dict__["_lazy_name"] = name

    def __getattr__(self, attr: str):
        value = getattr(importlib.import_module(self._lazy_name), attr)
        self.__dict__[attr] = value
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"


numpy = LazyModule("numpy")
