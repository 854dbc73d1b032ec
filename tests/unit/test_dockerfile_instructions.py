"""Typed instructions: flags, mounts, forms and scoping beyond cases.json."""

from __future__ import annotations

import pytest

from lamina.dockerfile import parse
from lamina.dockerfile.duration import format_duration, parse_duration
from lamina.dockerfile.instructions import (
    Add,
    Copy,
    Entrypoint,
    From,
    Onbuild,
    Run,
    Shell,
    parse_instruction,
    parse_stages,
)
from lamina.dockerfile.mounts import MountError, parse_mount
from lamina.dockerfile.scope import platform_args, resolve_global, resolve_stage
from lamina.errors import DockerfileError


def _one(text: str) -> object:
    return parse_instruction(parse(text).children[0])


def _err(text: str) -> str:
    with pytest.raises(DockerfileError) as info:
        _one(text)
    return info.value.message


def test_from_forms() -> None:
    instr = _one("FROM --platform=$BUILDPLATFORM golang:1.22 AS Build")
    assert isinstance(instr, From)
    assert (instr.base_name, instr.stage_name, instr.platform) == (
        "golang:1.22",
        "build",
        "$BUILDPLATFORM",
    )
    assert _err("FROM a b") == "FROM requires either one or three arguments"
    assert "invalid name for build stage" in _err("FROM a AS 1x")
    assert _err("FROM --platfrom=x a").startswith(
        "unknown flag: --platfrom (did you mean --platform?)"
    )


def test_copy_and_add_flags() -> None:
    c = _one("COPY --from=build --chown=1:2 --chmod=755 --link --parents --exclude=*.md "
             "--exclude=x a b /dst/")  # fmt: skip
    assert isinstance(c, Copy)
    assert (c.from_, c.chown, c.chmod, c.link, c.parents) == ("build", "1:2", "755", True, True)
    assert c.excludes == ("*.md", "x") and c.sources == ("a", "b") and c.dest == "/dst/"
    a = _one("ADD --checksum=sha256:abc --keep-git-dir=true --unpack=false https://x/y.tgz /")
    assert isinstance(a, Add)
    assert (a.checksum, a.keep_git_dir, a.unpack) == ("sha256:abc", True, False)
    assert _err("ADD --from=x a b").startswith("unknown flag: --from")
    assert _err("COPY --link --link a b") == "duplicate flag specified: --link"
    assert _err("COPY --chown a b") == "missing a value on flag: --chown"


def test_run_flags_and_mounts() -> None:
    r = _one("RUN --mount=type=secret,id=tok,target=/t --network=none --security=insecure x")
    assert isinstance(r, Run)
    assert r.mounts[0].type == "secret" and r.mounts[0].read_only
    assert (r.network, r.security) == ("none", "insecure")
    assert "unsupported network mode" in _err("RUN --network=bridge x")
    assert "unexpected key 'tpye'" in _err("RUN --mount=tpye=cache,target=/x x")
    assert parse_mount("type=tmpfs,target=/t,size=1m").size_limit == 1 << 20
    # go-units' regex admits "1.2.3"; its float parse refuses it: an error line, no traceback
    assert "invalid size: '1.2.3'" in _err("RUN --mount=type=tmpfs,target=/t,size=1.2.3 x")
    assert parse_mount("type=cache,target=/c,mode=0700,uid=1").mode == 0o700
    with pytest.raises(MountError):
        parse_mount("type=bind,target=/x,mode=0700")


def test_shell_forms() -> None:
    assert _err("SHELL /bin/sh -c") == "SHELL requires the arguments to be in JSON form"
    shell = _one('SHELL ["/bin/bash", "-c"]')
    assert isinstance(shell, Shell) and shell.shell == ("/bin/bash", "-c")
    entry = _one("ENTRYPOINT []")
    assert isinstance(entry, Entrypoint) and entry.cmdline is None


def test_onbuild_expression() -> None:
    instr = _one("ONBUILD RUN <<EOF\necho hi\nEOF")
    assert isinstance(instr, Onbuild)
    assert instr.expression == "RUN <<EOF\necho hi\nEOF" and instr.trigger == "RUN"


def test_no_stage_context() -> None:
    with pytest.raises(DockerfileError, match="no build stage in current context"):
        parse_stages(parse("ARG a\nRUN x\n"))


def test_durations_round_trip() -> None:
    for text, canon in [("90s", "1m30s"), ("1.5h", "1h30m0s"), ("250us", "250µs"), ("0", "0s")]:
        assert format_duration(parse_duration(text)) == canon


def test_scope_state_before_instruction_and_overrides() -> None:
    stages = parse_stages(parse(
        "ARG V=1\nARG W=${V}x\nFROM a\nARG V\nARG W\nENV e=$V f=$W\nENV V=env\n"
        "ARG V=arg\nLABEL l=$V\nRUN echo $V\nARG TARGETARCH\nUSER $TARGETARCH\n"
    ))  # fmt: skip
    scope = resolve_global(
        stages.meta_args, build_args={"V": "2"}, platform=platform_args("linux/arm64")
    )
    assert scope.values["W"] == "2x" and scope.defaults["W"] == "1x"
    stage = resolve_stage(stages.stages[0], scope, build_args={"V": "2"})
    env_step = stage.steps[2].instruction
    assert [(p.key, p.value) for p in env_step.pairs] == [("e", "2"), ("f", "2x")]  # type: ignore[attr-defined]
    assert stage.steps[5].instruction.pairs[0].value == "env"  # type: ignore[attr-defined]  # ENV wins
    assert stage.steps[6].instruction.cmdline == ("echo $V",)  # type: ignore[attr-defined]
    assert stage.steps[8].instruction.user == "arm64"  # type: ignore[attr-defined]
    assert stage.used_build_args == {"V"}
