"""Names a package offers without importing the modules behind them until first use.

``import squeezenet`` and ``squeezenet --help`` should not wait seconds for torch, torchvision or a runtime
they may never touch. A package lists its public names and the module each lives in; Python calls the
returned ``__getattr__`` (PEP 562) only for a name not yet in the package, imports that module, and keeps
the value, so every later lookup is an ordinary one.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``homes`` maps each public name to its module (relative)."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(homes[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
