"""Pure parts of the builder: argv and env of RUN, history texts, keys, labels, secrets.

No mounts or runtime here; these pin BuildKit's exact wording and rules.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.build.cache import BuildCache, CacheRecord, step_key
from lamina.build.progress import Event, Reporter, step_label
from lamina.build.secrets import SecretStore, parse_secret
from lamina.build.steps.base import StageState, timestamp
from lamina.build.steps.files import copy_history
from lamina.build.steps.run import history_text, process_env, run_argv
from lamina.dockerfile import parse, parse_instruction
from lamina.dockerfile.instructions import Add, Copy, Run
from lamina.errors import BuildError, UsageError
from lamina.oci.digest import Digest


def instr(text: str) -> object:
    return parse_instruction(parse(text + "\n").children[0])


def test_run_argv_shell_exec_and_heredocs() -> None:
    run = instr("RUN make all")
    assert isinstance(run, Run)
    assert run_argv(run, {}) == (["/bin/sh", "-c", "make all"], None)
    assert run_argv(run, {"Shell": ["/bin/bash", "-ec"]})[0] == ["/bin/bash", "-ec", "make all"]
    exec_form = instr('RUN ["echo", "a b"]')
    assert isinstance(exec_form, Run)
    assert run_argv(exec_form, {}) == (["echo", "a b"], None)
    doc = parse_instruction(parse("RUN <<EOT\necho hi\nEOT\n").children[0])
    assert isinstance(doc, Run)
    assert run_argv(doc, {}) == (["/bin/sh", "-c", "echo hi\n"], None)
    script = parse_instruction(parse("RUN <<EOT\n#!/bin/sh\necho hi\nEOT\n").children[0])
    assert isinstance(script, Run)
    argv, mounted = run_argv(script, {})
    assert argv == ["/bin/sh", "-c", "/dev/pipes/EOT"]
    assert mounted == ("EOT", "#!/bin/sh\necho hi\n")


def test_process_env_adds_args_and_default_path() -> None:
    config = {"Env": ["A=1"]}
    assert process_env(config, {"A": "1", "X": "arg"}) == [
        "A=1",
        "X=arg",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    assert process_env({"Env": ["PATH=/bin"]}, {"PATH": "/bin"}) == ["PATH=/bin"]


def test_history_texts_match_buildkit() -> None:
    state = StageState(config={}, architecture="amd64", os="linux", arg_names=["A", "B"])
    text = history_text(["/bin/sh", "-c", "make"], state, {"A": "1"})
    assert text == "RUN |2 A=1 B= /bin/sh -c make"
    copy = instr("COPY --chown=1:2 --chmod=644 a b /dst/")
    assert isinstance(copy, Copy)
    assert copy_history(copy) == "COPY --chown=1:2 --chmod=644 a b /dst/"
    add = instr("ADD --chmod=600 http://h/x <<EOF /y/\nhi\nEOF")
    assert isinstance(add, Add)
    assert copy_history(add) == "ADD --chmod=600 http://h/x <<EOF /y/"


def test_step_key_is_length_prefixed_and_stable() -> None:
    assert step_key(["a", "bc"]) != step_key(["ab", "c"])
    assert step_key(["x", {"b": 1, "a": 2}]) == step_key(["x", {"a": 2, "b": 1}])
    assert len(step_key([])) == 64


def test_cache_records_round_trip_and_damage_is_a_miss(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path / "bc")
    digest = Digest.of_bytes(b"layer")
    cache.put("ab" * 32, CacheRecord(diff_id=digest, blob=digest, size=5))
    assert cache.get("ab" * 32) == CacheRecord(diff_id=digest, blob=digest, size=5)
    cache.put("cd" * 32, CacheRecord(diff_id=None))
    assert cache.get("cd" * 32) == CacheRecord(diff_id=None)
    path = tmp_path / "bc" / "keys" / "ab" / f"{'ab' * 32}.json"
    path.write_text("{not json")
    assert cache.get("ab" * 32) is None
    cache.forget("cd" * 32)
    assert cache.get("cd" * 32) is None


def test_step_labels_and_reporter_numbering() -> None:
    assert step_label(None, 2, 3, "RUN x") == "[2/3] RUN x"
    assert step_label("build", 3, 12, "COPY a b") == "[build  3/12] COPY a b"
    events: list[Event] = []
    reporter = Reporter(events.append)
    v1, v2 = reporter.start("one"), reporter.start("two")
    v2.cached()
    v1.log("line")
    v1.done()
    v1.error("ignored: already finished")
    assert [(e.kind, e.vertex) for e in events] == [
        ("start", 1), ("start", 2), ("cached", 2), ("log", 1), ("done", 1),
    ]  # fmt: skip


def test_timestamp() -> None:
    assert timestamp(0) == "1970-01-01T00:00:00Z"
    assert timestamp(1700000000) == "2023-11-14T22:13:20Z"
    assert timestamp(None).endswith("Z")


def test_secrets(tmp_path: Path) -> None:
    src = tmp_path / "tok"
    src.write_text("v")
    secret = parse_secret(f"id=tok,src={src}", {})
    assert secret.id == "tok" and secret.path == src
    assert parse_secret(f"src={src}", {}).id == "tok"
    env_secret = parse_secret("id=e,env=MYVAR", {"MYVAR": "val"})
    assert env_secret.env_value == "val"
    store = SecretStore([secret, env_secret])
    assert store.value_for("tok") == "v" and store.value_for("e") == "val"
    assert store.file_for("e", tmp_path / "scratch").read_text() == "val"
    with pytest.raises(BuildError):
        store.file_for("missing", tmp_path)
    src.unlink()
    with pytest.raises(BuildError, match="not found"):
        store.file_for("tok", tmp_path)
    for bad in ("id=x", "nonsense", "id=e,env=UNSET", "id=x,src=/a,bogus=1"):
        with pytest.raises(UsageError):
            parse_secret(bad, {})
