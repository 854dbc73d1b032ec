"""Hostile layer tars for tests: each function returns tar bytes (or a list, one per layer).

Every generator documents what a safe applier must do: raise ``UnsafeArchive`` ("reject") or
apply it harmlessly inside the target ("neutralise"). ``outside`` is an absolute path the layer
tries to reach (tests pass a sentinel directory next to the target). The corpus is
:data:`CASES`: name -> (layers, expectation) where expectation is ``"reject"`` or
``"neutralise"`` for the merged mode (overlay mode applies each layer to its own empty dir).
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable

from lamina.testing.layers import (
    build_tar,
    device,
    directory,
    fifo,
    file,
    hardlink,
    symlink,
)

BLOCK = 512


def dotdot_name() -> bytes:
    """``../escaped``: reject (Docker: "breakout")."""
    return build_tar([file("../escaped", b"x")])


def dotdot_nested() -> bytes:
    """``a/../../escaped``: reject."""
    return build_tar([directory("a"), file("a/../../escaped", b"x")])


def absolute_name(outside: str) -> bytes:
    """``<outside>/abs``: neutralise (taken relative to the root)."""
    return build_tar([file(f"{outside}/abs", b"x")])


def symlink_write_through(outside: str) -> bytes:
    """``a -> <outside>`` then ``a/passwd`` in the same layer: reject."""
    return build_tar([symlink("a", outside), file("a/passwd", b"pwned\n")])


def symlink_chain_two_layers(outside: str) -> list[bytes]:
    """Layer 1 ``a -> b``, ``b -> <outside>``; layer 2 writes ``a/passwd``: neutralise."""
    return [
        build_tar([symlink("a", "b"), symlink("b", outside)]),
        build_tar([file("a/passwd", b"pwned\n")]),
    ]


def hardlink_outside() -> bytes:
    """A hard link to ``../../etc/passwd``: reject."""
    return build_tar([hardlink("x", "../../etc/passwd")])


def hardlink_through_symlink(outside: str) -> bytes:
    """``s -> <outside>`` then a hard link to ``s/victim``: reject."""
    return build_tar([symlink("s", outside), hardlink("x", "s/victim")])


def hardlink_to_lower(outside: str) -> list[bytes]:
    """Layer 1 ``s -> <outside>``; layer 2 hard-links ``s/victim``: reject (not this layer)."""
    return [build_tar([symlink("s", outside)]), build_tar([hardlink("x", "s/victim")])]


def hardlink_to_directory() -> bytes:
    """A hard link to a directory of the same layer: reject (link(2) refuses it)."""
    return build_tar([directory("d"), hardlink("x", "d")])


def overlay_xattr_injection(outside: str) -> bytes:
    """A file carrying ``trusted.overlay.redirect``/``opaque``: neutralise (xattrs dropped)."""
    d = directory("d")
    d.xattrs = {"trusted.overlay.redirect": outside.encode(), "user.overlay.opaque": b"y"}
    f = file("d/f", b"x")
    f.xattrs = {"trusted.overlay.metacopy": b"", "user.ok": b"kept"}
    return build_tar([d, f])


def whiteout_dotdot() -> bytes:
    """``.wh...`` (would delete ``..``): reject."""
    return build_tar([directory("a"), file("a/.wh...")])


def whiteout_through_symlink(outside: str) -> list[bytes]:
    """Layer 1 ``d -> <outside>``; layer 2 ``d/.wh.victim``: neutralise (victim survives)."""
    return [build_tar([symlink("d", outside)]), build_tar([file("d/.wh.victim", mode=0o600)])]


def directory_over_symlink(outside: str) -> list[bytes]:
    """Layer 1 ``d -> <outside>``; layer 2 dir ``d`` and ``d/f``: neutralise (link replaced)."""
    return [
        build_tar([symlink("d", outside)]),
        build_tar([directory("d"), file("d/f", b"in the target\n")]),
    ]


def file_over_symlink(outside: str) -> bytes:
    """``f -> <outside>/victim`` then a regular ``f``: neutralise (link replaced, not followed)."""
    return build_tar([symlink("f", f"{outside}/victim"), file("f", b"replaced\n")])


def device_nodes() -> bytes:
    """Char device 1/3, block device 7/0, a 0/0 char device: made as root, else skipped."""
    return build_tar([device("null", 1, 3), device("loop0", 7, 0, block=True), device("wo", 0, 0)])


def setuid_file() -> bytes:
    """A setuid-root and a setgid file: kept with their bits."""
    return build_tar([file("suid", b"#!/bin/sh\n", mode=0o4755), file("sgid", b"", mode=0o2755)])


def fifo_member() -> bytes:
    """A FIFO member: created, never opened."""
    return build_tar([fifo("pipe")])


def _header_offsets(data: bytes) -> list[int]:
    offsets, pos = [], 0
    while pos + BLOCK <= len(data) and any(data[pos : pos + BLOCK]):
        offsets.append(pos)
        size = int(data[pos + 124 : pos + 136].strip(b"\0 ") or b"0", 8)
        pos += BLOCK + -(-size // BLOCK) * BLOCK
    return offsets


def corrupt_middle_header() -> bytes:
    """Three files; the second header's checksum is broken: reject (not a silent EOF)."""
    data = bytearray(build_tar([file("one", b"1"), file("two", b"2"), file("three", b"3")]))
    second = _header_offsets(bytes(data))[1]
    data[second + 148 : second + 156] = b"0000000\0"
    return bytes(data)


def garbage_after_end() -> bytes:
    """A valid tar followed by non-zero bytes after the end marker: reject."""
    return build_tar([file("one", b"1")]) + b"\x01" * BLOCK


def truncated() -> bytes:
    """A tar cut in the middle of a file's data: reject."""
    data = build_tar([file("big", b"A" * 5000)])
    return data[: BLOCK * 4]


def huge_claimed_size() -> bytes:
    """A file header claiming 1 TiB followed by 1 KiB of data and EOF: reject (truncated)."""
    info = tarfile.TarInfo("huge")
    info.size = 1 << 40
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict") + b"A" * 1024


def huge_pax_header() -> bytes:
    """A PAX header claiming 2 GiB: reject before reading it into memory."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = 1 << 31
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict") + b"9 path=x\n" + bytes(2048)


def long_path_symlink(outside: str, depth: int = 24) -> bytes:
    """Nested dirs past PATH_MAX, then ``.../link -> <outside>`` and ``.../link/x``: reject."""
    comp = "d" * 200
    entries = []
    path = ""
    for _ in range(depth):
        path = f"{path}/{comp}" if path else comp
        entries.append(directory(path))
    up = "/".join([".."] * (depth + 5))
    entries.append(symlink(f"{path}/link", f"{up}{outside}"))
    entries.append(file(f"{path}/link/x", b"pwned\n"))
    return build_tar(entries)


def long_path_relative_escape(outside: str, depth: int = 24) -> list[bytes]:
    """Layer 1: deep ``.../link -> ../../..<outside>``; layer 2 writes through it: neutralise."""
    comp = "d" * 200
    path = "/".join([comp] * depth)
    up = "/".join([".."] * (depth + 5))
    return [
        build_tar(
            [directory("/".join([comp] * (i + 1))) for i in range(depth)]
            + [symlink(f"{path}/link", f"{up}{outside}")]
        ),
        build_tar([file(f"{path}/link/x", b"pwned\n")]),
    ]


Case = tuple[Callable[[str], list[bytes]], str]

#: name -> (function of ``outside`` returning the layers, expectation in merged mode)
CASES: dict[str, Case] = {
    "dotdot_name": (lambda o: [dotdot_name()], "reject"),
    "dotdot_nested": (lambda o: [dotdot_nested()], "reject"),
    "absolute_name": (lambda o: [absolute_name(o)], "neutralise"),
    "symlink_write_through": (lambda o: [symlink_write_through(o)], "reject"),
    "symlink_chain_two_layers": (symlink_chain_two_layers, "neutralise"),
    "hardlink_outside": (lambda o: [hardlink_outside()], "reject"),
    "hardlink_through_symlink": (lambda o: [hardlink_through_symlink(o)], "reject"),
    "hardlink_to_lower": (hardlink_to_lower, "reject"),
    "hardlink_to_directory": (lambda o: [hardlink_to_directory()], "reject"),
    "overlay_xattr_injection": (lambda o: [overlay_xattr_injection(o)], "neutralise"),
    "whiteout_dotdot": (lambda o: [whiteout_dotdot()], "reject"),
    "whiteout_through_symlink": (whiteout_through_symlink, "neutralise"),
    "directory_over_symlink": (directory_over_symlink, "neutralise"),
    "file_over_symlink": (lambda o: [file_over_symlink(o)], "neutralise"),
    "device_nodes": (lambda o: [device_nodes()], "neutralise"),
    "setuid_file": (lambda o: [setuid_file()], "neutralise"),
    "fifo_member": (lambda o: [fifo_member()], "neutralise"),
    "corrupt_middle_header": (lambda o: [corrupt_middle_header()], "reject"),
    "garbage_after_end": (lambda o: [garbage_after_end()], "reject"),
    "truncated": (lambda o: [truncated()], "reject"),
    "huge_claimed_size": (lambda o: [huge_claimed_size()], "reject"),
    "huge_pax_header": (lambda o: [huge_pax_header()], "reject"),
    "long_path_symlink": (lambda o: [long_path_symlink(o)], "reject"),
    "long_path_relative_escape": (long_path_relative_escape, "neutralise"),
}
