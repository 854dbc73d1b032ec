"""The rootless hook: an unprivileged lamina joins its store's user + mount namespace first.

:func:`enter_user_namespace` runs in :func:`lamina.cli.main.main` before click parses
anything, while the process is still single-threaded (setns(2) into a user namespace
requires it). For a non-root caller and a command that touches the store it

1. finds the store root as the CLI will (``--root``, ``$LAMINA_ROOT``, else the XDG data dir)
   and pins it in ``$LAMINA_ROOT`` — inside the namespace the process is uid 0, and the
   default for uid 0 (``/var/lib/lamina``) would be wrong;
2. joins (or creates) the namespace pair of :mod:`lamina.runtime.userns`, whose state lives in
   ``<root>/userns``;
3. warns, once when the pair is made, that a user without ``/etc/subuid`` ranges runs with a
   single-id map (only container uid 0 exists; ``-u 1000`` fails).

Help, version and the commands that never touch the store or mount anything (``login``,
``logout``, ``dockerfile``) do not join. Root never joins.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

import click

#: commands that never need the namespace
NO_NAMESPACE = frozenset({"login", "logout", "dockerfile"})
#: global options that take a value
_VALUED = frozenset({"--root", "--storage-driver"})


def parse_global(args: list[str]) -> tuple[str | None, str | None]:
    """(``--root`` value, command name) from the global options before the command."""
    root: str | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in _VALUED:
            if eq:
                root = value if name == "--root" else root
            else:
                if i + 1 < len(args) and name == "--root":
                    root = args[i + 1]
                i += 1
        elif arg in ("--help", "-h", "--version"):
            return root, None
        elif not arg.startswith("-"):
            return root, arg
        i += 1
    return root, None


def store_root(flag: str | None, env: dict[str, str] | os._Environ[str]) -> Path:
    """The store root the CLI will use, made absolute."""
    from lamina.cli.main import default_root

    chosen = flag or env.get("LAMINA_ROOT") or None
    return (Path(chosen) if chosen else default_root(os.geteuid(), env)).absolute()


def enter_user_namespace(args: list[str]) -> None:
    """Join the store's rootless namespace pair when this command needs it (see above)."""
    if os.geteuid() == 0:
        return
    flag, command = parse_global(args)
    if command is None or command in NO_NAMESPACE or "--help" in args:
        return
    root = store_root(flag, os.environ)
    if flag is None:
        os.environ["LAMINA_ROOT"] = str(root)
    from lamina.runtime.userns import HostUser, enter

    uid, gid = os.geteuid(), os.getegid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    entered = enter(
        root / "userns",
        HostUser(uid=uid, gid=gid, name=name),
        newuidmap=shutil.which("newuidmap"),
        newgidmap=shutil.which("newgidmap"),
    )
    if entered.created and entered.single_id:
        click.echo(
            f"lamina: warning: {name} has no ranges in /etc/subuid and /etc/subgid: running "
            "with a single-id user namespace (only uid 0 in containers)",
            err=True,
        )
