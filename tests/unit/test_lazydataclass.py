"""lazy_dataclass: the same behaviour as @dataclass, made on first instantiation."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass, field

import pytest

from lamina._internal.lazydataclass import is_pending, lazy_dataclass, materialize


@lazy_dataclass(frozen=True, kw_only=True)
class Base:
    """A frozen keyword-only model with every kind of default."""

    name: str
    tags: tuple[str, ...] = ()
    extra: list[int] = field(default_factory=list)
    note: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("empty name")


@lazy_dataclass(frozen=True, kw_only=True)
class Child(Base):
    """A lazy dataclass deriving from another."""

    level: int = 0


class Plain(Base):
    """A plain subclass: inherits the lazy __init__."""


@lazy_dataclass(frozen=True, order=True)
class Version:
    """Positional fields with ordering."""

    major: int
    minor: int = 0


@lazy_dataclass
class Mutable:
    """A mutable one: eq without frozen makes instances unhashable, as dataclass does."""

    count: int = 0
    items: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RefBase:
    """The stdlib twin of Base, to compare against."""

    name: str
    tags: tuple[str, ...] = ()
    extra: list[int] = field(default_factory=list)
    note: str = field(default="", repr=False, compare=False)


def test_nothing_is_made_until_the_first_instance() -> None:
    @lazy_dataclass(frozen=True)
    class Late:
        value: int

    assert is_pending(Late)
    assert not hasattr(Late, "__dataclass_fields__")
    assert Late(3).value == 3
    assert not is_pending(Late)
    assert [f.name for f in dataclasses.fields(Late)] == ["value"]


def test_same_behaviour_as_dataclass() -> None:
    a, ref = Base(name="x", tags=("t",)), RefBase(name="x", tags=("t",))
    assert repr(a) == repr(ref).replace("RefBase", "Base")
    assert a == Base(name="x", tags=("t",), note="ignored by eq")
    assert a != Base(name="y")
    other: object = RefBase(name="x")
    assert a != other  # another class: not equal, as dataclass
    assert Base(name="x").extra is not Base(name="x").extra  # factory per instance
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'name'"):
        a.name = "z"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'name'"):
        del a.name
    with pytest.raises(TypeError):
        Base("x")  # type: ignore[call-arg]  # keyword-only
    with pytest.raises(ValueError, match="empty name"):
        Base(name="")  # __post_init__ runs


def test_hash_follows_compare_fields() -> None:
    @lazy_dataclass(frozen=True, kw_only=True)
    class Hashed:
        key: str
        note: str = field(default="", compare=False)

    assert hash(Hashed(key="a")) == hash(Hashed(key="a", note="n")) == hash(("a",))
    with pytest.raises(TypeError, match="unhashable type: 'list'"):
        hash(Child(name="a"))  # as dataclass: the list field is compared, so hashed
    assert len({Version(1, 2), Version(1, 2), Version(2)}) == 2
    with pytest.raises(TypeError, match="unhashable"):
        hash(Mutable())


def test_inheritance_and_plain_subclass() -> None:
    c = Child(name="c", level=2)
    assert [f.name for f in dataclasses.fields(c)] == ["name", "tags", "extra", "note", "level"]
    assert repr(c) == "Child(name='c', tags=(), extra=[], level=2)"
    p = Plain(name="p")
    assert isinstance(p, Base) and repr(p) == "Plain(name='p', tags=(), extra=[])"
    assert p != Base(name="p")


def test_order_replace_copy_pickle() -> None:
    assert sorted([Version(2), Version(1, 5), Version(1)]) == [
        Version(1),
        Version(1, 5),
        Version(2),
    ]
    assert Version(1) < Version(1, 1) <= Version(1, 1) and Version(3) > Version(2, 9)
    assert Version(1).__lt__(Base(name="x")) is NotImplemented  # type: ignore[operator]
    c = Child(name="c")
    assert dataclasses.replace(c, level=5) == Child(name="c", level=5)
    assert copy.copy(c) == c and copy.deepcopy(c) == c
    assert pickle.loads(pickle.dumps(c)) == c
    assert dataclasses.asdict(Version(1, 2)) == {"major": 1, "minor": 2}
    m = Mutable()
    m.count += 1
    assert m == Mutable(count=1)


def test_cyclic_repr_does_not_recurse() -> None:
    m = Mutable()
    m.items = {"self": m}  # type: ignore[dict-item]
    assert repr(m) == "Mutable(count=0, items={'self': ...})"


def test_threads_racing_on_the_first_instance() -> None:
    @lazy_dataclass(frozen=True, kw_only=True)
    class Raced:
        a: int
        b: str = "b"

    barrier = threading.Barrier(8)
    made: list[Raced] = []
    errors: list[BaseException] = []

    def make() -> None:
        barrier.wait()
        try:
            made.extend(Raced(a=i) for i in range(200))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(made) == 1600 and made[0] == Raced(a=0)


def test_bad_declarations_fail_when_made() -> None:
    with pytest.raises(TypeError, match="must not define __init__"):

        @lazy_dataclass
        class Own:
            def __init__(self) -> None:
                pass

    @lazy_dataclass
    class Misordered:
        a: int = 0
        b: str  # type: ignore[misc]

    with pytest.raises(TypeError, match="Misordered"):
        materialize(Misordered)


def test_run_path_makes_few_classes() -> None:
    """The container commands import their models without making them (why this module exists)."""
    code = (
        "import dataclasses, lamina.ops.container as c, lamina.cli.container_cmd\n"
        "import lamina._internal.lazydataclass as l\n"
        "print(sum(1 for m in list(__import__('sys').modules.values())"
        " for v in vars(m).values() if isinstance(v, type) and l.is_pending(v)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 20  # models imported but not made
