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


class LazyPattern:
    """A regular expression compiled, and `re` imported, the first time it is used: a scan of a
    small pickle never needs one, and `re` (with enum) is a tenth of such a process's imports.
    flags: names of re flags ("M", "I", ...), not their values (those would import re)."""

    def __init__(self, pattern, *flags: str):
        self.__dict__["_lazy_args"] = (pattern, flags)

    def __getattr__(self, attr: str):
        import re

        pattern, flags = self._lazy_args
        compiled = re.compile(pattern, sum((getattr(re, f) for f in flags), 0))
        value = getattr(compiled, attr)
        self.__dict__[attr] = value
        return value

    def __repr__(self) -> str:
        return f"<lazy pattern {self._lazy_args[0]!r}>"


numpy = LazyModule("numpy")
