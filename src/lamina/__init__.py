"""lamina: a daemonless, rootless container image builder, layer store and runtime.

The package keeps a small public surface; see ``ARCHITECTURE.md`` for the layering of the
sub-packages. Importing :mod:`lamina` itself is cheap: nothing heavy is imported here.
"""

from __future__ import annotations

__version__ = "0.1.0"
