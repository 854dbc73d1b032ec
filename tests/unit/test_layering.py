"""The import layering rule of ARCHITECTURE.md §2, enforced.

Lower layers never import upper ones (imports inside functions count too), and no package
module imports ``lamina.testing``.

One deliberate refinement: ``lamina.oci.digest`` is a leaf (it imports only ``lamina.errors``)
and ranks with ``_internal``, so the verifying readers there can return real digests.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "lamina"

RANK = {
    "errors": 0,
    "_internal": 0,
    "oci": 1,
    "reference": 1,
    "image": 2,
    "dockerfile": 2,
    "runtime": 2,
    "blobstore": 3,
    "registry": 3,
    "unionfs": 3,
    "snapshot": 4,
    "store": 5,
    "transports": 6,
    "build": 7,
    "ops": 8,
    "cli": 9,
    "server": 9,
}


#: modules that rank lower than their package
LEAVES = {"lamina.oci.digest": 0}


def _rank(module: str) -> int | None:
    for leaf, rank in LEAVES.items():
        if module == leaf or module.startswith(leaf + "."):
            return rank
    comp = _component(module)
    return RANK.get(comp) if comp else None


def _component(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "lamina" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _violations(src: Path = SRC) -> list[str]:
    bad: list[str] = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src)
        own = rel.parts[0].removesuffix(".py")
        if own in ("__init__", "__main__"):
            continue
        for lineno, target in _imports(path):
            comp = _component(target)
            if comp is None:
                continue
            if comp == "testing" and own != "testing":
                bad.append(f"{rel}:{lineno}: imports lamina.testing")
            rank = _rank(target)
            if own == "testing" or rank is None or own not in RANK:
                continue
            if rank > RANK[own]:
                bad.append(f"{rel}:{lineno}: {own} (rank {RANK[own]}) imports {target}")
    return bad


def test_every_package_has_a_rank() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and not p.name.startswith("__")}
    modules = {p.stem for p in SRC.glob("*.py") if not p.stem.startswith("__")}
    assert (packages | modules) - {"testing"} <= set(RANK)


def test_lower_layers_never_import_upper_ones() -> None:
    assert _violations() == []


def test_rule_detects_a_violation(tmp_path: Path) -> None:
    # The checker itself must be able to fail: an oci module importing the store lazily,
    # and a package module importing lamina.testing.
    (tmp_path / "oci").mkdir()
    (tmp_path / "oci" / "x.py").write_text("def f():\n    from lamina.store import Store\n")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "y.py").write_text("import lamina.testing.layers\n")
    (tmp_path / "_internal").mkdir()
    (tmp_path / "_internal" / "z.py").write_text("from lamina.oci.digest import Digest\n")
    assert _violations(tmp_path) == [
        "oci/x.py:2: oci (rank 1) imports lamina.store",
        "oci/x.py:2: oci (rank 1) imports lamina.store.Store",
        "store/y.py:1: imports lamina.testing",
    ]
