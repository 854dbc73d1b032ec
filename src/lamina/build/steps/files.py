"""``COPY``, ``ADD`` and ``WORKDIR``: steps that write files without running anything.

COPY/ADD sources come from the build context (content key from the stat cache, so an
unchanged context costs metadata), from a stage or image (``--from``; keyed by its chain id,
which determines its content), or from heredocs (keyed by their text). The copy itself is
:func:`lamina.build.copy.copy_into` / :func:`lamina.build.add.add_into`; ``--chown`` names
are resolved in the image being built. ``--link`` copies into an empty layer that is then
registered on top of the stage (its key ignores the parent, so a cached ``--link`` layer is
rebased onto a new parent without copying again). An ``ADD`` of a URL without ``--checksum``
is never taken from the cache (we cannot know the remote content without fetching it); an
``ADD`` of a git repository is keyed by the commit ``git ls-remote`` resolves its ref to, so a
moved branch is a miss and an unchanged one a hit (the sources are resolved once per step).

WORKDIR creates its directory (owned by the image's USER, as BuildKit's mkdir) unless it is
``/``; when the directory already exists the step adds no layer (an empty_layer entry).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina.build.chown import Owner, resolve_chown
from lamina.build.context import SourcePath, resolve_sources
from lamina.build.copy import copy_into, ensure_dir
from lamina.build.progress import Vertex
from lamina.build.sourcekey import hash_sources
from lamina.build.steps.base import BuildEnv, StageState, lookup, record
from lamina.build.workspace import Committed, StepFS, open_view
from lamina.dockerfile.instructions import Add, Copy, Workdir
from lamina.dockerfile.scope import make_lexer
from lamina.errors import DockerfileError
from lamina.oci.digest import Digest

if TYPE_CHECKING:
    from lamina.build.reuse import LayerReuse


def copy_history(instr: Copy | Add) -> str:
    """BuildKit's ``created_by`` for COPY/ADD (without the ``# buildkit`` suffix)."""
    words = [instr.keyword]
    if isinstance(instr, Copy) and instr.parents:
        words.append("--parents")
    if instr.chown:
        words.append(f"--chown={instr.chown}")
    if instr.chmod:
        words.append(f"--chmod={instr.chmod}")
    words += list(instr.sources)
    words += [f"<<{c.path}" for c in instr.contents]
    words.append(instr.dest)
    return " ".join(words)


def _add_sources(env: BuildEnv, instr: Copy | Add) -> list[Any] | None:
    """ADD's sources, resolved once per step (git refs are resolved here: ``ls-remote``)."""
    if not isinstance(instr, Add) or not instr.sources:
        return None
    from lamina.build.add import resolve_add_sources  # urllib, git: only for ADD

    sock = env.ssh.socket_for("default") if env.ssh is not None else None
    return resolve_add_sources(env.context, list(instr.sources), ssh_auth_sock=sock)


def _source_key(env: BuildEnv, instr: Copy | Add, found: list[Any] | None) -> object:
    if isinstance(instr, Copy) and instr.from_:
        source = env.find_source(instr.from_)
        return ["from", instr.from_, str(source.chain)]
    if isinstance(instr, Add):
        from lamina.build.add import GitSource, RemoteSource

        found = found or []
        local = [s for s in found if isinstance(s, SourcePath)]
        remote = [s.url for s in found if isinstance(s, RemoteSource)]
        git = [s.key() for s in found if isinstance(s, GitSource)]
        if remote and not instr.checksum:
            return ["uncacheable", os.urandom(16).hex()]
        digest = hash_sources(None, local, cache=env.stat_cache()) if local else None
        key: list[object] = ["add", str(digest), remote, instr.checksum, instr.unpack]
        return [*key, git, instr.keep_git_dir] if git else key
    if not instr.sources:
        return ["none"]
    ctx = env.require_context(instr.keyword)
    digest = hash_sources(ctx, list(instr.sources), cache=env.stat_cache())
    return ["context", str(digest)]


def copy_step(
    env: BuildEnv, state: StageState, instr: Copy | Add, visible: Mapping[str, str], vertex: Vertex
) -> None:
    """Execute one COPY/ADD (or take it from the cache); updates ``state`` and history."""
    workdir = str(state.config.get("WorkingDir") or "/")
    contents = [[c.path, _heredoc_text(c.data, c.expand, visible)] for c in instr.contents]
    found = _add_sources(env, instr)
    key = env.cache_key(
        instr.keyword, None if instr.link else state.chain, workdir, instr.dest,
        list(instr.sources), contents, instr.chown, instr.chmod, instr.link,
        getattr(instr, "parents", False), list(instr.excludes), _source_key(env, instr, found),
    )  # fmt: skip
    hit = lookup(env, state, key, vertex)
    if hit is None:
        env.ensure_layer(state.chain)
        with StepFS(env.store, None if instr.link else state.chain) as fs:
            owner = _owner(env, state, fs, instr)
            reuse = _reuse(env, fs, instr, workdir, contents)
            with contextlib.ExitStack() as stack:
                _copy(env, fs, instr, workdir, owner, contents, stack, found, reuse)
            onto = state.chain if instr.link else True
            if reuse is None:
                committed = fs.commit(epoch=env.epoch, onto=onto)
            else:
                committed = _commit_reusing(env, fs, reuse[0], reuse[1], onto)
        hit = record(env, state, key, committed)
        vertex.done()
    state.add_history(copy_history(instr) + " # buildkit", env.created, empty=not hit)


def _commit_reusing(
    env: BuildEnv, fs: StepFS, reuse: LayerReuse, key: str, onto: Digest | bool | None
) -> Committed | None:
    """Link the reused files, commit (copying their earlier tar entries), record the copy."""
    fs.unmount()  # links go into the upper dir only once it is unmounted
    reuse.apply()
    offsets: dict[str, tuple[int, int]] = {}
    with reuse.open_earlier(env.store, env.epoch) as earlier:
        committed = fs.commit(epoch=env.epoch, onto=onto, earlier=earlier, offsets=offsets)
    if committed is not None:
        reuse.save(
            env.cache.directory / "reuse", key, committed.chain, diff_id=committed.diff_id,
            epoch=env.epoch, offsets=offsets,
        )  # fmt: skip
    return committed


def _reuse(
    env: BuildEnv, fs: StepFS, instr: Copy | Add, workdir: str, contents: list[list[str]]
) -> tuple[LayerReuse, str] | None:
    """Reuse of the last layer of this COPY (:mod:`lamina.build.reuse`) and its record key,
    for a COPY of one context name (no ``--from``, heredoc or ``--parents``). Its key is the
    step's without the content and the parent; ``--no-cache`` records but links nothing."""
    if not isinstance(instr, Copy) or instr.from_ or contents or instr.parents:
        return None
    if len(instr.sources) != 1:
        return None
    from lamina.build.reuse import LayerReuse, load_previous

    key = env.cache_key(
        "copy-reuse", instr.link, workdir, instr.dest, list(instr.sources), instr.chown,
        instr.chmod, list(instr.excludes),
    )  # fmt: skip
    previous = (
        None if env.no_cache else load_previous(env.store, env.cache.directory / "reuse", key)
    )
    rootfs = Path(os.path.realpath(fs.rootfs))
    return LayerReuse(previous, fs.upper, rootfs, not fs.copies), key


def _heredoc_text(data: str, expand: bool, visible: Mapping[str, str]) -> str:
    if not expand or "$" not in data:
        return data
    try:
        return make_lexer().process_word(data, visible)
    except DockerfileError:
        return data


def _owner(env: BuildEnv, state: StageState, fs: StepFS, instr: Copy | Add) -> Owner | None:
    if not instr.chown:
        return None
    if not instr.link:
        return resolve_chown(fs.rootfs, instr.chown)
    with open_view(env.store, state.chain) as view:
        return resolve_chown(view, instr.chown)


def _copy(
    env: BuildEnv, fs: StepFS, instr: Copy | Add, workdir: str, owner: Owner | None,
    contents: list[list[str]], stack: contextlib.ExitStack, found_add: list[Any] | None = None,
    reuse: tuple[LayerReuse, str] | None = None,
) -> None:  # fmt: skip
    common = dict(workdir=workdir, chown=owner, chmod=instr.chmod or None)
    if contents:
        docs = fs.dir / "heredoc"
        docs.mkdir(mode=0o755)
        for name, text in contents:
            path = docs / posixpath.basename(name)
            path.write_text(text)
            os.chmod(path, 0o644)
        found = resolve_sources(docs, [posixpath.basename(n) for n, _ in contents])
        copy_into(fs.rootfs, found, _dest(instr, len(found)), **common)  # type: ignore[arg-type]
    if isinstance(instr, Add):
        from lamina.build.add import add_into

        if found_add:
            sock = env.ssh.socket_for("default") if env.ssh is not None else None
            add_into(
                fs.rootfs, found_add, instr.dest, checksum=instr.checksum or None,
                unpack=instr.unpack, excludes=instr.excludes, link=instr.link,
                tmp_dir=fs.dir, keep_git_dir=instr.keep_git_dir, ssh_auth_sock=sock,
                **common,  # type: ignore[arg-type]
            )  # fmt: skip
        return
    if not instr.sources:
        return
    if instr.from_:
        source = env.find_source(instr.from_).chain
        env.ensure_layer(source)
        root = stack.enter_context(open_view(env.store, source))
        found = resolve_sources(root, list(instr.sources), preserve_owner=True)
    else:
        found = env.require_context("COPY").resolve(list(instr.sources))
    # one directory source only: two could write one path, and a deferred link would then win
    reused = reuse[0] if reuse is not None and len(found) == 1 and found[0].is_dir else None
    copy_into(
        fs.rootfs, found, instr.dest, parents=instr.parents, excludes=instr.excludes,
        link=instr.link, reuse=reused, **common,  # type: ignore[arg-type]
    )  # fmt: skip


def _dest(instr: Copy | Add, count: int) -> str:
    """Heredoc files go below ``dest`` when it names a directory (or there are several)."""
    if count > 1 and not instr.dest.endswith("/"):
        return instr.dest + "/"
    return instr.dest


def workdir_step(env: BuildEnv, state: StageState, instr: Workdir, vertex: Vertex | None) -> None:
    """WORKDIR: set it, and create the directory (a layer) unless it is ``/`` or exists."""
    old = str(state.config.get("WorkingDir") or "/")
    wd = posixpath.normpath(posixpath.join(old, instr.path))
    wd = "/" + wd.lstrip("/")
    state.config = {**state.config, "WorkingDir": wd}
    if wd == "/" or vertex is None:
        state.add_history(f"WORKDIR {wd}", env.created, empty=True)
        if vertex is not None:
            vertex.done()
        return
    user = str(state.config.get("User") or "")
    key = env.cache_key("workdir", state.chain, wd, user)
    hit = lookup(env, state, key, vertex)
    if hit is None:
        env.ensure_layer(state.chain)
        with StepFS(env.store, state.chain) as fs:
            owner = resolve_chown(fs.rootfs, user) if user else None
            stamp = env.epoch * 1_000_000_000 if env.epoch is not None else None
            ensure_dir(fs.rootfs, wd, chown=owner, timestamp_ns=stamp)
            hit = record(env, state, key, fs.commit(epoch=env.epoch))
        vertex.done()
    state.add_history(f"WORKDIR {wd}", env.created, empty=not hit)


__all__ = ["copy_history", "copy_step", "workdir_step"]
