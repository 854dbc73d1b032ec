"""``python -m lamina`` runs the CLI."""

from __future__ import annotations

from lamina.cli.entry import main

if __name__ == "__main__":
    main()
