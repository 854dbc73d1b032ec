"""lamina.dockerfile: Dockerfile text in, values out.

Public surface:

* :func:`parse` -> :class:`Document` (frozen AST with line spans and warnings)
* :func:`dump` -> BuildKit's AST dump text
* :func:`parse_instruction`, :func:`parse_stages` -> typed, validated instructions
* :func:`build_graph` -> stages, dependencies, target pruning, parallel levels
* :func:`lint` -> BuildKit build-check warnings

Everything raises only :class:`lamina.errors.DockerfileError` for bad input.
"""

from __future__ import annotations

from lamina.dockerfile.ast import Directive, Document, Heredoc, Node, ParseWarning
from lamina.dockerfile.dump import dump, go_quote
from lamina.dockerfile.graph import BuildGraph, StageNode, build_graph
from lamina.dockerfile.instructions import (
    Instruction,
    Stage,
    Stages,
    parse_instruction,
    parse_stages,
)
from lamina.dockerfile.lint import LintWarning, lint
from lamina.dockerfile.parser import parse

__all__ = [
    "BuildGraph",
    "Directive",
    "Document",
    "Heredoc",
    "Instruction",
    "LintWarning",
    "Node",
    "ParseWarning",
    "Stage",
    "StageNode",
    "Stages",
    "build_graph",
    "dump",
    "go_quote",
    "lint",
    "parse",
    "parse_instruction",
    "parse_stages",
]
