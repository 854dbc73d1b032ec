"""The Change model: docker diff letters, Engine API JSON, order."""

from __future__ import annotations

from lamina.snapshot.changes import ADDED, CHANGED, DELETED, Change


def test_change_forms() -> None:
    c = Change("/etc/group", DELETED)
    assert (c.letter, str(c), c.to_json()) == (
        "D",
        "D /etc/group",
        {"Path": "/etc/group", "Kind": 2},
    )
    assert (Change("/a", CHANGED).letter, Change("/a", ADDED).letter) == ("C", "A")
    assert sorted([Change("/b", 1), Change("/a", 0)])[0].path == "/a"
