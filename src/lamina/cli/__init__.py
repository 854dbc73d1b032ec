"""The command line: argv -> ops -> exit code. The only place that reads the environment and
turns :mod:`lamina.errors` into text and exit codes."""

from __future__ import annotations
