"""BuildKit instruction conformance: ../shared/conformance/buildkit-instructions/cases.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lamina.dockerfile import parse
from lamina.dockerfile.ast import Node
from lamina.dockerfile.flags import FlagError, parse_flags
from lamina.dockerfile.graph import build_graph
from lamina.dockerfile.instructions import (
    Add,
    Arg,
    Copy,
    Healthcheck,
    HealthConfig,
    Run,
    parse_instruction,
    parse_stages,
)
from lamina.dockerfile.ports import PortError, parse_port_spec, parse_ports
from lamina.dockerfile.scope import add_env, parse_key_value, proxy_env, to_env_map
from lamina.errors import DockerfileError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
CASES: dict[str, Any] = json.loads(
    (DATA / "buildkit-instructions" / "cases.json").read_text(encoding="utf-8")
)


def _first(text: str) -> Any:
    return parse_instruction(parse(text).children[0])


def _error_of(text: str) -> str:
    with pytest.raises(DockerfileError) as info:
        _first(text)
    return info.value.message


# --- every case as a (id, check) pair, so one test id per case and one pass counter -----------


def _arg_count(case: dict[str, Any]) -> None:
    assert _error_of(case["dockerfile"]) == case["error"]


def _error_case(case: dict[str, Any]) -> None:
    assert case["error_contains"] in _error_of(case["dockerfile"])


def _copy_heredoc(case: dict[str, Any]) -> None:
    instr = _first(case["dockerfile"])
    assert isinstance(instr, Copy)
    assert instr.dest == case["dest"]
    assert list(instr.sources) == case["source_paths"]
    got = [{"path": c.path, "data": c.data, "expand": c.expand} for c in instr.contents]
    assert got == case["source_contents"]


def _run_heredoc(case: dict[str, Any]) -> None:
    instr = _first(case["dockerfile"])
    assert isinstance(instr, Run)
    assert instr.prepend_shell == case["prepend_shell"]
    assert list(instr.cmdline or ()) == case["cmdline"]
    got = [{"name": f.name, "data": f.data, "chomp": f.chomp} for f in instr.files]
    assert got == case["files"]


def _duration(case: dict[str, Any]) -> None:
    text = f"HEALTHCHECK --interval={case['value']} CMD true"
    if case.get("ok"):
        assert isinstance(_first(text), Healthcheck)
    else:
        assert case["error_contains"] in _error_of(text)


def _parse_port(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(PortError) as info:
            parse_port_spec(case["spec"])
        assert str(info.value) == case["error"]
    else:
        assert parse_port_spec(case["spec"]) == case["expected"]


def _parse_ports(case: dict[str, Any]) -> None:
    if case.get("error"):
        with pytest.raises(PortError):
            parse_ports(case["specs"])
    else:
        assert parse_ports(case["specs"]) == case["expected"]


def _circular(case: dict[str, Any]) -> None:
    with pytest.raises(DockerfileError) as info:
        build_graph(parse(case["dockerfile"]))
    assert info.value.message == case["error"]


def _add_env(case: dict[str, Any]) -> None:
    assert add_env(case["env"], *case["set"]) == case["result"]


def _key_value(case: list[str]) -> None:
    assert parse_key_value(case[0]) == (case[1], case[2])


def _env_map(case: dict[str, Any]) -> None:
    args = case["args_list"] if "args_list" in case else list(case["args"].items())
    assert to_env_map([(k, v) for k, v in args], case["env"]) == case["result"]


def _collect() -> list[tuple[str, Callable[[], None]]]:
    out: list[tuple[str, Callable[[], None]]] = []

    def add(prefix: str, items: list[Any], fn: Callable[[Any], None], key: str = "") -> None:
        for i, item in enumerate(items):
            label = item.get(key, i) if key and isinstance(item, dict) else i
            out.append((f"{prefix}[{label}]", lambda item=item: fn(item)))

    add("argcount", CASES["argument_count_errors"], _arg_count, "dockerfile")
    add("error", CASES["error_cases"], _error_case, "name")
    add("copy_heredoc", CASES["copy_heredoc"], _copy_heredoc)
    add("run_heredoc", CASES["run_heredoc"], _run_heredoc)
    add("duration", CASES["duration_flags"], _duration, "value")
    expose = CASES["expose_ports (dockerfile2llb convert_expose_test.go)"]
    add("parse_port", expose["parse_port"], _parse_port, "spec")
    add("parse_ports", expose["parse_ports"], _parse_ports)
    add("circular", CASES["stage_graph (TestDockerfileCircularDependencies)"], _circular)
    env = CASES["env_semantics (dockerfile2llb convert_test.go)"]
    add("add_env", env["add_env"], _add_env)
    add("key_value", env["parse_key_value"], _key_value)
    add("env_map", env["args_plus_env_for_RUN (toEnvMap)"], _env_map)
    for name, fn in _SINGLES.items():
        out.append((name, fn))
    return out


def _healthcheck_shell_join() -> None:
    case = CASES["healthcheck"][0]
    node = Node(keyword="HEALTHCHECK", args=("CMD", "hello", "world"), start_line=1)
    instr = parse_instruction(node)
    assert isinstance(instr, Healthcheck)
    assert list(instr.health.test) == case["expected_test"]


def _healthcheck_rules() -> None:
    assert _error_of("HEALTHCHECK NONE x") == "HEALTHCHECK NONE takes no arguments"
    assert _error_of("HEALTHCHECK FOO x") == 'Unknown type "FOO" in HEALTHCHECK (try CMD)'
    assert _error_of("HEALTHCHECK CMD") == "Missing command after HEALTHCHECK CMD"
    assert "negative" in _error_of("HEALTHCHECK --retries=-1 CMD true")


def _healthcheck_history() -> None:
    fact = CASES["healthcheck_history (TestDispatchHealthcheckHistory)"]
    text = (
        "HEALTHCHECK --interval=1s --timeout=10s --start-period=3s --start-interval=100ms"
        ' --retries=5 CMD ["bin", "-c", "exit 0"]'
    )
    instr = _first(text)
    assert isinstance(instr, Healthcheck)
    assert instr.health == HealthConfig(
        test=("CMD", "bin", "-c", "exit 0"),
        interval=10**9,
        timeout=10 * 10**9,
        start_period=3 * 10**9,
        start_interval=10**8,
        retries=5,
    )
    # upstream history shows the JSON test without the CMD prefix
    bare = HealthConfig(**{**_fields(instr.health), "test": tuple(fact["health"]["Test"])})
    assert bare.history_text() == fact["history_created_by"]


def _fields(h: HealthConfig) -> dict[str, Any]:
    return {k: getattr(h, k) for k in HealthConfig.__dataclass_fields__}


def _nonascii_heredoc_ok() -> None:
    assert isinstance(_first("ADD <<EOF /x\nhi\nEOF"), Add)


def _run_flags_used() -> None:
    case = CASES["run_flags_used"]
    instr = _first(case["dockerfile"])
    assert isinstance(instr, Run) and list(instr.flags_used) == case["flags_used"]


def _builder_flags() -> None:
    fact = CASES["builder_flags (TestBuilderFlags)"]
    spec: dict[str, Any] = {f"bool{i}": "bool" for i in range(1, 6)}
    spec |= {f"str{i}": "string" for i in range(1, 5)}
    parsed = parse_flags(fact["used_example"]["args"], spec)
    assert sorted(parsed.used) == fact["used_example"]["used_sorted"]
    assert parse_flags([], spec).used == () and parse_flags(["--"], spec).used == ()
    for args, message in [
        (["--str1"], "missing a value on flag: --str1"),
        (["--bool1="], "missing a value on flag: --bool1"),
        (["--bool1=false1"], "expecting boolean value for flag --bool1, not: false1"),
        (["--str1=a", "--str1=b"], "duplicate flag specified: --str1"),
        (["--nope"], "unknown flag: --nope"),
        (["x"], "arg should start with -- : x"),
    ]:
        with pytest.raises(FlagError) as info:
            parse_flags(args, spec)
        assert str(info.value).startswith(message)
    assert parse_flags(["--str1="], spec).string("str1") == ""
    assert parse_flags(["--bool1=FALSE"], spec).boolean("bool1") is False
    lists = parse_flags(["--mount=a", "--mount=b"], {"mount": "strings"})
    assert lists.strings("mount") == ("a", "b")


def _proxy() -> None:
    fact = CASES["env_semantics (dockerfile2llb convert_test.go)"]["proxy_args"]
    assert proxy_env(fact["build_args"]) == fact["proxy_env"]
    assert proxy_env({}) is None


def _doc_comments() -> None:
    fact = CASES["doc_comments (TestCommentsDetection)"]
    stages = parse_stages(parse(fact["dockerfile"]))
    want = fact["expected"]
    assert stages.stages[0].from_.doc == want["stage0.doc"]
    assert stages.meta_args[0].args[0].doc == want["meta_arg foo.doc"]
    cmds = [c for c in stages.stages[0].commands if isinstance(c, Arg)]
    assert cmds[0].args[0].doc == want["stage ARG foo.doc"]
    assert cmds[1].args[0].doc == want["ARG bar.doc"]
    assert cmds[1].args[1].doc == want["ARG baz.doc"]


def _expose_expansion() -> None:
    graph = build_graph(parse('FROM x\nARG PORTS="3000 4000/udp"\nEXPOSE $PORTS\nEXPOSE 5000\n'))
    ports: list[str] = []
    for step in graph.stages[0].resolved.steps:
        ports += getattr(step.instruction, "ports", ())
    assert parse_ports(ports) == ["3000/tcp", "4000/udp", "5000/tcp"]


_SINGLES: dict[str, Callable[[], None]] = {
    "healthcheck[shell-join]": _healthcheck_shell_join,
    "healthcheck[rules]": _healthcheck_rules,
    "healthcheck_history": _healthcheck_history,
    "run_flags_used": _run_flags_used,
    "builder_flags": _builder_flags,
    "proxy_args": _proxy,
    "doc_comments": _doc_comments,
    "expose_expansion": _expose_expansion,
    "add_heredoc": _nonascii_heredoc_ok,
}

ALL = _collect()


@pytest.mark.parametrize("check", [c for _, c in ALL], ids=[i for i, _ in ALL])
def test_case(check: Callable[[], None]) -> None:
    check()


def test_pass_counts(capsys: pytest.CaptureFixture[str]) -> None:
    passed = 0
    for _, check in ALL:
        try:
            check()
        except (AssertionError, pytest.fail.Exception):
            continue
        passed += 1
    with capsys.disabled():
        print(f"\nbuildkit-instructions: {passed}/{len(ALL)}")
    assert passed == len(ALL)
