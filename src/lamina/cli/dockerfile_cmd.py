"""``lamina dockerfile``: hidden debugging commands over the Dockerfile frontend.

* ``dump FILE``  prints BuildKit's AST dump format (byte-compatible with BuildKit's tests).
* ``check FILE`` prints build-check findings as ``FILE:LINE: RuleName - message``; exit
  status 1 when any finding is an error (``# check=error=true``), 0 otherwise.

Parse errors propagate as :class:`~lamina.errors.DockerfileError`; the entry point maps them
to text and exit codes. ``-`` reads standard input.
"""

from __future__ import annotations

import sys

import click


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as fh:
        return fh.read()


@click.group(name="dockerfile", hidden=True)
def group() -> None:
    """Dockerfile debugging tools."""


@group.command("dump")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
def dump_cmd(file: str) -> None:
    """Print FILE's AST in BuildKit's dump format."""
    from lamina.dockerfile import dump, parse

    sys.stdout.write(dump(parse(_read(file), path=file)))


@group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE")
@click.option("--target", default=None, help="Stage to check against (default: last).")
def check_cmd(file: str, build_args: tuple[str, ...], target: str | None) -> None:
    """Print build-check warnings for FILE."""
    from lamina.dockerfile import parse
    from lamina.dockerfile.lint import lint

    args = dict(a.partition("=")[::2] for a in build_args)
    findings = lint(parse(_read(file), path=file), build_args=args, target=target)
    for finding in findings:
        click.echo(finding.format(file))
    if any(f.error for f in findings):
        # SystemExit, not ctx.exit: click swallows Exit's code when standalone_mode=False.
        sys.exit(1)
