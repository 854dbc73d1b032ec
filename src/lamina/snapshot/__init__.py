"""Layer snapshots: apply a layer tar to a directory; a tree or overlay upper dir -> layer tar.

Public surface (the store and the builder use only these):

- :func:`apply_layer` / :class:`ApplyResult` — safe application, ``overlay`` or ``merged``.
- :func:`write_layer` / :class:`WrittenLayer` — deterministic tar of a tree or an upper dir.
- :func:`diff_trees`, :func:`write_diff_layer` — the copying backend's two-tree diff.
- :func:`changes_from_upper`, :func:`changes_from_trees`, :class:`Change` — ``docker diff``.

Layering: imports only ``lamina.errors``, ``lamina._internal`` and ``lamina.oci``.
"""

from __future__ import annotations

from lamina.snapshot.apply import ApplyResult, apply_layer
from lamina.snapshot.changes import Change, changes_from_trees, changes_from_upper
from lamina.snapshot.diff import TreeChange, diff_trees, write_diff_layer
from lamina.snapshot.writer import WrittenLayer, write_layer

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
