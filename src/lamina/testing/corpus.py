"""The builder's test corpus: load cases, prepare their contexts, check results.

A case is a directory under ``tests/build_corpus/<name>/`` holding a ``Dockerfile``, its
context files and ``expect.json``. The context is the case directory itself (copied to a
temporary directory first, so setup steps never touch the repository). ``expect.json`` keys:

- ``build_args`` {K: V}, ``target``, ``dockerfile`` (default ``Dockerfile``), ``network``,
  ``secrets`` {id: path relative to the case dir, or an absolute path that may be missing};
- ``http``: serve ``<case>/_http/`` on 127.0.0.1 and pass ``--build-arg HTTP_BASE=http://...``;
- ``setup``: actions run on the copied context — ``["fifo", P]``, ``["hardlink", SRC, DST]``,
  ``["archive", P, COMPRESSION]`` (:func:`write_archive`), ``["chmod", P, "0600"]``,
  ``["mknod", P, MAJOR, MINOR]``, ``["outside", NAME, TEXT]`` (a file *beside* the context);
- ``pre_builds``: ``[{"dockerfile": F, "tag": T}]`` built first (e.g. an ONBUILD parent);
- ``config``: expected values of :data:`CONFIG_FIELDS`; a field not given must equal the
  busybox base's (:data:`BASE_CONFIG`); ``image``: expected top-level inspect keys (Author);
- ``files``: ``{path: spec or null}`` — null means absent; spec keys ``type`` (f d l),
  ``mode`` (octal string), ``uid``, ``gid``, ``content``, ``sha256``, ``target``,
  ``hardlink_of`` (another path of the same inode);
- ``exact_paths``: the non-null ``files`` are the whole tree; ``host_absent``: host paths
  that must not exist after the build; ``context_unchanged``: context names a build step
  must not create;
- ``error``: ``{"contains": [...], "line": N}`` — the build must fail with those texts;
- ``differential``: ``{"skip": reason}`` or ``{"ignore": [paths]}`` (see the differential test).

Every context file is dated :data:`EPOCH` after setup, so outputs do not depend on checkout
times. Never imported by lamina itself.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import os
import shutil
import stat
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import field
from pathlib import Path
from typing import Any

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.testing.cli import Result, run_cli
from lamina.testing.command import run_command
from lamina.testing.layers import EPOCH, tree_manifest

#: config fields compared by the corpus and differential tests
CONFIG_FIELDS = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
)
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: the busybox base's config (as the corpus fixture imports it)
BASE_CONFIG: dict[str, Any] = {"Env": [PATH_ENV], "Cmd": ["sh"]}
IMPORT_CHANGES = (f"ENV {PATH_ENV}", 'CMD ["sh"]')
META_FILES = ("expect.json",)


@lazy_dataclass
class Case:
    """One corpus case: its name, directory and parsed ``expect.json``."""

    name: str
    path: Path
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def is_error(self) -> bool:
        """True when the build is expected to fail."""
        return "error" in self.spec


def load_cases(corpus: Path) -> list[Case]:
    """Every case under ``corpus``, sorted by name."""
    return [
        Case(d.name, d, json.loads((d / "expect.json").read_text()))
        for d in sorted(corpus.iterdir())
        if (d / "expect.json").is_file()
    ]


def write_archive(path: Path, compression: str) -> None:
    """A fixed tar (``arch/hello.txt``, ``arch/sub/secret`` 0600 uid 1000, ``arch/link``).

    ``compression`` is ``none``, ``gz``, ``bz2``, ``xz`` or ``zst``; contents are identical
    whatever the compression, so cases share one expectation.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data, mode, uid in [
            ("arch", tarfile.DIRTYPE, b"", 0o755, 0),
            ("arch/hello.txt", tarfile.REGTYPE, b"hello from archive\n", 0o644, 0),
            ("arch/link", tarfile.SYMTYPE, b"hello.txt", 0o777, 0),
            ("arch/sub", tarfile.DIRTYPE, b"", 0o750, 1000),
            ("arch/sub/secret", tarfile.REGTYPE, b"archived secret\n", 0o600, 1000),
        ]:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, uid, EPOCH
            if kind == tarfile.SYMTYPE:
                info.linkname = data.decode()
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    if compression == "gz":
        import gzip

        raw = gzip.compress(raw, mtime=0)
    elif compression == "bz2":
        import bz2

        raw = bz2.compress(raw)
    elif compression == "xz":
        import lzma

        raw = lzma.compress(raw)
    elif compression == "zst":
        import zstandard

        raw = zstandard.ZstdCompressor().compress(raw)
    path.write_bytes(raw)


def _setup(ctx: Path, action: list[Any]) -> None:
    kind, target = action[0], ctx / action[1]
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "hardlink":
        os.link(ctx / action[1], ctx / action[2])
    elif kind == "archive":
        write_archive(target, action[2])
    elif kind == "chmod":
        os.chmod(target, int(action[2], 8))
    elif kind == "mknod":
        os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(action[2], action[3]))
    elif kind == "outside":
        (ctx.parent / action[1]).write_text(action[2])
    else:
        raise ValueError(f"unknown setup action {kind!r}")


def prepare_context(case: Case, work: Path) -> Path:
    """Copy the case to ``work/ctx``, run its setup, date everything EPOCH; return the copy."""
    ctx = work / "ctx"
    shutil.copytree(case.path, ctx, symlinks=True, ignore=shutil.ignore_patterns(*META_FILES))
    for action in case.spec.get("setup", []):
        _setup(ctx, action)
    for dirpath, dirnames, filenames in os.walk(ctx):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (EPOCH, EPOCH), follow_symlinks=False)
    os.utime(ctx, (EPOCH, EPOCH))
    return ctx


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def build_flags(case: Case, ctx: Path, base_url: str | None) -> list[str]:
    """The flags lamina and buildah share: -f, --build-arg, --target, --secret, --network."""
    spec = case.spec
    flags = ["-f", str(ctx / spec.get("dockerfile", "Dockerfile"))]
    args = dict(spec.get("build_args", {}))
    if base_url is not None:
        args["HTTP_BASE"] = base_url
    for k, v in sorted(args.items()):
        flags += ["--build-arg", f"{k}={v}"]
    if "target" in spec:
        flags += ["--target", spec["target"]]
    for sid, src in sorted(spec.get("secrets", {}).items()):
        flags += ["--secret", f"id={sid},src={case.path / src}"]
    if "network" in spec:
        flags += ["--network", spec["network"]]
    return flags


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {} or value == ""


def normalize_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """The :data:`CONFIG_FIELDS` of ``config``, empty values as None, zero health fields dropped."""
    config = config or {}
    out: dict[str, Any] = {}
    for key in CONFIG_FIELDS:
        value = config.get(key)
        if key == "Healthcheck" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if not _empty(v) and v != 0}
        out[key] = None if _empty(value) else value
    return out


def config_problems(expected: dict[str, Any], actual: dict[str, Any] | None) -> list[str]:
    """Differences between ``expected`` (missing fields = the base's) and ``actual``."""
    want = normalize_config({**BASE_CONFIG, **expected})
    got = normalize_config(actual)
    return [
        f"config {k}: want {want[k]!r}, got {got[k]!r}" for k in CONFIG_FIELDS if want[k] != got[k]
    ]


def manifest_by_path(root: Path, **kw: bool) -> dict[str, tuple[object, ...]]:
    """:func:`tree_manifest` rows keyed by relative path (no leading slash)."""
    return {str(row[0]): row for row in tree_manifest(root, **kw)}


def _file_problems(
    path: str, spec: dict[str, Any], rows: dict[str, tuple[object, ...]]
) -> list[str]:
    row = rows[path]
    _, kind, mode, uid, gid, _size, content, _rdev, _xa, group, _mtime = row
    got = {
        "type": kind,
        "mode": f"{mode:04o}",
        "uid": uid,
        "gid": gid,
        "sha256": content if kind == "f" else None,
        "target": content if kind == "l" else None,
    }
    problems = [
        f"{path}: {key} want {spec[key]!r}, got {got[key]!r}"
        for key in ("type", "mode", "uid", "gid", "sha256", "target")
        if key in spec and spec[key] != got[key]
    ]
    if "content" in spec:
        import hashlib

        if got["sha256"] != hashlib.sha256(spec["content"].encode()).hexdigest():
            problems.append(f"{path}: content differs from {spec['content']!r}")
    if "hardlink_of" in spec:
        other = rows.get(spec["hardlink_of"].strip("/"))
        if group is None or other is None or other[9] != group:
            problems.append(f"{path}: not a hard link of {spec['hardlink_of']}")
    return problems


def file_problems(expected: dict[str, Any], root: Path, *, exact: bool = False) -> list[str]:
    """Differences between the ``files`` expectations and the tree at ``root``.

    With ``exact`` the expected (non-null) paths must be the whole tree.
    """
    rows = manifest_by_path(root, mtimes=False, xattrs=False)
    problems: list[str] = []
    if exact:
        want = {p.strip("/") for p, spec in expected.items() if spec is not None}
        problems += [f"{p}: unexpected" for p in sorted(set(rows) - want)]
    for raw, spec in expected.items():
        path = raw.strip("/")
        if spec is None:
            if path in rows:
                problems.append(f"{path}: should be absent")
        elif path not in rows:
            problems.append(f"{path}: missing")
        else:
            problems += _file_problems(path, spec, rows)
    return problems


def import_busybox(root: Path, busybox_tar: Path) -> None:
    """Import the busybox rootfs tarball into the store at ``root`` as ``busybox``."""
    changes = [arg for change in IMPORT_CHANGES for arg in ("--change", change)]
    run_cli(root, "import", str(busybox_tar), "busybox", *changes)


def build_with_lamina(root: Path, case: Case, work: Path) -> tuple[Result, Path]:
    """Build ``case`` (after its pre-builds) into the store at ``root`` as ``corpus-<name>``.

    The context is prepared under ``work``; returns the CLI result (never raises for the
    case's own build) and the context directory. Pre-builds must succeed and match their
    ``config`` expectations.
    """
    ctx = prepare_context(case, work)
    for pre in case.spec.get("pre_builds", []):
        run_cli(root, "build", "-t", pre["tag"], "-f", str(ctx / pre["dockerfile"]), str(ctx))
        if "config" in pre:
            [data] = json.loads(run_cli(root, "inspect", pre["tag"]).out)
            problems = config_problems(pre["config"], data["Config"])
            assert problems == [], problems
    with case_server(case) as url:
        flags = build_flags(case, ctx, url)
        res = run_cli(
            root, "build", "-t", f"corpus-{case.name}", *flags, str(ctx), check=False, timeout=180
        )
    return res, ctx


def export_tree(root: Path, tag: str, dest: Path) -> Path:
    """``lamina export TAG`` extracted at ``dest`` by GNU tar (numeric owners, symlink times)."""
    tar = dest.with_suffix(".tar")
    run_cli(root, "export", tag, "-o", str(tar))
    dest.mkdir()
    run_command(["tar", "--numeric-owner", "-C", str(dest), "-xpf", str(tar)])
    return dest


@contextlib.contextmanager
def case_server(case: Case) -> Iterator[str | None]:
    """The case's ``_http`` directory served on 127.0.0.1 when it asks for it, else None."""
    if not case.spec.get("http"):
        yield None
        return
    with serving(case.path / "_http") as url:
        yield url


def read_text(root: Path, path: str) -> str:
    """The text of regular file ``path`` inside an extracted tree ("" if it is not one)."""
    p = root / path.strip("/")
    return p.read_text() if p.is_file() and not p.is_symlink() else ""
