"""Layer snapshots: apply a layer tar to a directory; a tree or overlay upper dir -> layer tar.

Public surface (the store and the builder use only these):

- :func:`apply_layer` / :class:`ApplyResult` — safe application, ``overlay`` or ``merged``.
- :func:`write_layer` / :class:`WrittenLayer` — deterministic tar of a tree or an upper dir.
- :func:`diff_trees`, :func:`write_diff_layer` — the copying backend's two-tree diff.
- :func:`changes_from_upper`, :func:`changes_from_trees`, :class:`Change` — ``docker diff``.

The names are imported from their modules on first use (PEP 562): a RUN step's snapshot
needs only the writer, not the applier, the tar reader or the tree diff.

Layering: imports only ``lamina.errors``, ``lamina._internal`` and ``lamina.oci``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lamina._internal.lazy import lazy_exports

if TYPE_CHECKING:
    from lamina.snapshot.apply import ApplyResult, apply_layer
    from lamina.snapshot.changes import Change, changes_from_trees, changes_from_upper
    from lamina.snapshot.diff import TreeChange, diff_trees, write_diff_layer
    from lamina.snapshot.writer import WrittenLayer, write_layer

#: exported name -> the module that defines it
_EXPORTS = {
    "ApplyResult": "lamina.snapshot.apply",
    "apply_layer": "lamina.snapshot.apply",
    "Change": "lamina.snapshot.changes",
    "changes_from_trees": "lamina.snapshot.changes",
    "changes_from_upper": "lamina.snapshot.changes",
    "TreeChange": "lamina.snapshot.diff",
    "diff_trees": "lamina.snapshot.diff",
    "write_diff_layer": "lamina.snapshot.diff",
    "WrittenLayer": "lamina.snapshot.writer",
    "write_layer": "lamina.snapshot.writer",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ApplyResult",
    "Change",
    "TreeChange",
    "WrittenLayer",
    "apply_layer",
    "changes_from_trees",
    "changes_from_upper",
    "diff_trees",
    "write_diff_layer",
    "write_layer",
]
