"""Entry point and lazy command table.

Invariant: start-up imports only click and this module; each command's module (and through it
the heavy parts of lamina) is imported when that command runs, so ``lamina images`` never pays
for the builder, the registry client or rich. ``--version`` and ``--help`` (answered before
any command runs) import neither ``logging``, ``pathlib`` nor ``importlib.metadata``: the
version is this package's ``__version__``; logging is set up when the first record is logged
(:mod:`lamina._internal.log`; with ``--debug`` at once), so commands that log nothing
(``images``, ``run``, a cached build) never import it.
``tests/unit/test_cli_startup.py`` guards the module set.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from lamina import __version__
from lamina.errors import LaminaError

if TYPE_CHECKING:
    from pathlib import Path

#: command name -> (module, attribute, short help, hidden)
COMMANDS: dict[str, tuple[str, str, str, bool]] = {
    "images": ("lamina.cli.image_cmd", "images", "List images in the store.", False),
    "run": ("lamina.cli.container_cmd", "run", "Create and start a container.", False),
    "create": ("lamina.cli.container_cmd", "create", "Create a container.", False),
    "start": ("lamina.cli.container_cmd", "start", "Start containers.", False),
    "exec": ("lamina.cli.container_cmd", "exec_", "Run a command in a running container.", False),
    "stop": ("lamina.cli.container_cmd", "stop", "Stop running containers.", False),
    "kill": ("lamina.cli.container_cmd", "kill", "Send a signal to containers.", False),
    "wait": ("lamina.cli.container_cmd", "wait", "Wait for containers to stop.", False),
    "rm": ("lamina.cli.container_cmd", "rm", "Remove containers.", False),
    "rename": ("lamina.cli.container_cmd", "rename", "Rename a container.", False),
    "ps": ("lamina.cli.container_info_cmd", "ps", "List containers.", False),
    "logs": ("lamina.cli.container_info_cmd", "logs", "Show a container's output.", False),
    "top": ("lamina.cli.container_info_cmd", "top", "Show a container's processes.", False),
    "diff": ("lamina.cli.container_info_cmd", "diff", "Show a container's changes.", False),
    "commit": ("lamina.cli.container_info_cmd", "commit", "Image from a container.", False),
    "cp": ("lamina.cli.container_info_cmd", "cp", "Copy files to/from a container.", False),
    "mount": ("lamina.cli.container_info_cmd", "mount", "Mount a container's rootfs.", False),
    "container": ("lamina.cli.main", "container_group", "Manage containers.", False),
    "image": ("lamina.cli.main", "image_group", "Manage images.", False),
    "tag": ("lamina.cli.image_cmd", "tag", "Add a name to an image.", False),
    "rmi": ("lamina.cli.image_cmd", "rmi", "Remove images.", False),
    "inspect": ("lamina.cli.image_cmd", "inspect", "Show containers or images in detail.", False),
    "history": ("lamina.cli.image_cmd", "history", "Show an image's history.", False),
    "load": ("lamina.cli.archive_cmd", "load", "Load an image archive into the store.", False),
    "save": ("lamina.cli.archive_cmd", "save", "Save images to an archive.", False),
    "import": ("lamina.cli.archive_cmd", "import_", "Import a rootfs tarball as an image.", False),
    "export": (
        "lamina.cli.archive_cmd",
        "export",
        "Export a container's (or an image's) filesystem.",
        False,
    ),
    "pull": (
        "lamina.cli.archive_cmd",
        "pull",
        "Pull an image from a registry or a transport into the store.",
        False,
    ),
    "push": ("lamina.cli.registry_cmd", "push", "Push an image to a registry or transport.", False),
    "login": ("lamina.cli.registry_cmd", "login", "Log in to a registry.", False),
    "logout": ("lamina.cli.registry_cmd", "logout", "Log out of a registry.", False),
    "copy": ("lamina.cli.archive_cmd", "copy", "Copy an image between transports.", False),
    "system": ("lamina.cli.system_cmd", "system", "Manage the store (df, prune, check).", False),
    "version": ("lamina.cli.system_cmd", "version", "Show version information.", False),
    "dockerfile": ("lamina.cli.dockerfile_cmd", "group", "Dockerfile debugging tools.", True),
    "build": ("lamina.cli.build_cmd", "build", "Build an image from a Dockerfile.", False),
    "executor": (
        "lamina.cli.executor_cmd",
        "executor",
        "Build and push with Kaniko's executor flags.",
        False,
    ),
}


_I = "lamina.cli.container_info_cmd"
#: ``lamina container SUB`` (Docker's management command): the container commands under
#: Docker's sub-names, (module, attribute, short help, hidden) as in :data:`COMMANDS`
CONTAINER_COMMANDS: dict[str, tuple[str, str, str, bool]] = {
    name: COMMANDS[name] for name in (
        "run", "create", "start", "exec", "stop", "kill", "wait", "rm", "rename", "logs", "top",
        "diff", "commit", "cp", "mount",
    )
} | {
    "ls": (_I, "ps", "List containers.", False),
    "list": (_I, "ps", "List containers.", True),
    "ps": (_I, "ps", "List containers.", True),
    "inspect": (_I, "container_inspect", "Show low-level information on containers.", False),
    "export": (_I, "container_export", "Export a container's filesystem as a tar.", False),
    "prune": ("lamina.cli.system_cmd", "container_prune", "Remove stopped containers.", False),
}  # fmt: skip
#: ``lamina image SUB``: the image commands under Docker's sub-names
IMAGE_COMMANDS: dict[str, tuple[str, str, str, bool]] = {
    name: COMMANDS[name] for name in (
        "tag", "history", "save", "load", "import", "pull", "push", "build",
    )
} | {
    "ls": ("lamina.cli.image_cmd", "images", "List images.", False),
    "list": ("lamina.cli.image_cmd", "images", "List images.", True),
    "rm": ("lamina.cli.image_cmd", "rmi", "Remove images.", False),
    "prune": ("lamina.cli.system_cmd", "image_prune", "Remove unused images.", False),
    "inspect": ("lamina.cli.image_cmd", "image_inspect", "Show low-level information on images.",
                False),
}  # fmt: skip


def _configure_logging(debug: bool) -> None:
    """Send lamina's log records to stderr: warnings and up as ``lamina: message``, or with
    ``--debug`` every record with its level."""
    import logging

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="lamina: %(levelname)s: %(message)s" if debug else "lamina: %(message)s",
    )


class Context:
    """What every command gets: global options, resolved once."""

    def __init__(self, root: Path, driver: str | None, debug: bool) -> None:
        self.root = root
        self.driver = driver
        self.debug = debug
        self._store: Any = None

    def store(self) -> Any:
        """The local store, opened on first use."""
        if self._store is None:
            from lamina.store import Store

            self._store = Store(self.root, driver=self.driver)
        return self._store

    def catalog(self) -> Any:
        """A read-only image list of the store (:class:`lamina.store.catalog.Catalog`: cheap to
        import, creates nothing), or the store itself once it is open."""
        if self._store is not None:
            return self._store
        from lamina.store.catalog import Catalog

        return Catalog(self.root)


class LazyGroup(click.Group):
    """A group whose subcommands (``table``: name -> module, attribute, help, hidden) are
    imported on first use."""

    def __init__(
        self, *args: Any, table: dict[str, tuple[str, str, str, bool]] | None = None, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.table = COMMANDS if table is None else table

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, spec in self.table.items() if not spec[3])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = self.table.get(cmd_name)
        if spec is None:
            return None
        module = importlib.import_module(spec[0])
        cmd = getattr(module, spec[1])
        assert isinstance(cmd, click.Command)
        from lamina.cli.entry import resume_collection

        resume_collection()  # start-up is over: the command runs with the collector on
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help from the table, so `lamina --help` imports no command module.
        rows = [(n, self.table[n][2]) for n in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


container_group = LazyGroup(
    name="container", table=CONTAINER_COMMANDS, help="Manage containers (as docker container)."
)
image_group = LazyGroup(name="image", table=IMAGE_COMMANDS, help="Manage images (as docker image).")


def default_root(euid: int, env: dict[str, str] | os._Environ[str]) -> Path:
    """/var/lib/lamina for root, $XDG_DATA_HOME/lamina (or ~/.local/share/lamina) otherwise."""
    from pathlib import Path

    if euid == 0:
        return Path("/var/lib/lamina")
    base = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME", "/"), ".local", "share")
    return Path(base) / "lamina"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(),
    envvar="LAMINA_ROOT",
    help="Store root (default /var/lib/lamina as root, XDG data dir otherwise).",
)
@click.option(
    "--storage-driver",
    type=click.Choice(["overlay", "vfs"]),
    envvar="LAMINA_STORAGE_DRIVER",
    help="Layer storage driver (default: auto).",
)
@click.option("--debug", is_flag=True, help="Log debug output and show tracebacks.")
@click.version_option(__version__, "-v", "--version", prog_name="lamina")
@click.pass_context
def cli(ctx: click.Context, root: str | None, storage_driver: str | None, debug: bool) -> None:
    """lamina: daemonless, rootless container images and containers."""
    from pathlib import Path

    from lamina._internal import log

    log.defer_setup(log.DEBUG if debug else log.WARNING, lambda: _configure_logging(debug))
    if debug:  # third-party loggers' debug records too, and from the start
        log.ensure_setup()
    ctx.obj = Context(
        root=(Path(root) if root else default_root(os.geteuid(), os.environ)).absolute(),
        driver=storage_driver,
        debug=debug,
    )


def _report(exc: LaminaError) -> None:
    click.echo(f"lamina: error: {exc}", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)


def _answered_by_click(args: list[str]) -> bool:
    """True for ``--version`` / ``--help`` before any command word: click answers them before
    any command runs (and the rootless hook would not join for them), so the hook's module is
    not even imported. A conservative check: option values (``--root DIR``) count as words."""
    for arg in args:
        if arg in ("--version", "--help", "-h"):
            return True
        if not arg.startswith("-"):
            return False
    return False


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map lamina errors to one line on stderr and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        if os.geteuid() != 0 and not _answered_by_click(args):
            # rootless: join the store's user + mount namespace first
            from lamina.cli.rootless import enter_user_namespace

            enter_user_namespace(args)
        # Without standalone mode click returns ctx.exit()'s code instead of exiting.
        rv = cli.main(args=args, prog_name="lamina", standalone_mode=False)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("lamina: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LaminaError as exc:
        if debug:
            raise
        _report(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except OSError as exc:
        if debug:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        click.echo(f"lamina: error:{where}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    finally:
        # Interpreter shutdown collects the whole heap (every module's objects) several times
        # over: ~20 ms for `run`. Frozen objects are skipped by those collections; atexit
        # handlers, finalizers and stdio flushing still run, so nothing is lost — at worst a
        # reference cycle is not collected in a process that is about to exit.
        import gc

        if (log := sys.modules.get("lamina._internal.log")) is not None:  # not for --version
            log.cancel_setup()
        gc.freeze()
