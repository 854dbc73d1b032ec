"""PEP 562 lazy exports for package ``__init__`` modules.

A package lists ``name -> defining module`` and gets a module-level ``__getattr__`` that
imports the defining module on first use of a name and caches the value in the package's
namespace, so later lookups are plain attribute reads. Importing one submodule of such a
package therefore does not import its siblings (CLI start-up pays only for what a command
uses). Unknown names raise AttributeError as a normal module would.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``package`` (its ``__name__``) serving ``exports`` lazily."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
