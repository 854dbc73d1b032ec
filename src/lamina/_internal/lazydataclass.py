"""``lazy_dataclass``: a dataclass made on first use, with one generated method instead of six.

``dataclasses.dataclass`` writes ``__init__``, ``__repr__``, ``__eq__``, ``__hash__`` and, for
frozen classes, ``__setattr__``/``__delattr__`` as source text and compiles each one while the
class statement runs: ~1.2 ms per frozen class on these machines, ~0.2 s for the ~150 model
classes, most of which a given command never instantiates (``lamina run`` imported 30 and paid
~35 ms of its ~40 ms gap to podman). ``@lazy_dataclass(...)`` takes the same options as
``@dataclass(...)`` (those this code base uses) and only marks the class. On the first
instantiation (or :func:`materialize`) the standard dataclass processing runs with every
generated method turned off — it still collects the fields, applies defaults and
``default_factory``, sets ``__dataclass_fields__`` and ``__match_args__`` (~0.05 ms) — then
``__init__`` is compiled from source, as dataclass does, because it is the method every
instance runs, and the others are shared generic functions over the field names (~0.2 ms in
all). ``dataclasses.fields``/``replace``/``asdict`` work as on any dataclass.

Deviation from ARCHITECTURE.md §7 ("frozen slotted keyword-only dataclasses"): these have no
``__slots__``. A slotted dataclass is a *new* class object, so it cannot be made lazily —
every reference taken at import time would point to the unprocessed class. Classes made per
file or per tar entry and kept by the thousand, where the instance dict matters, stay
``@dataclass(slots=True)`` (tar members, tree changes, archive index entries).

Everything a first instantiation needs is imported with this module (``dataclasses`` is
loaded by the commands anyway): a process that changes its root or drops privileges after
start-up may no longer reach the standard library, and must still be able to make a class.

Invariants:

- Same behaviour as ``@dataclass`` with the same options: the ``__init__`` signature, defaults
  and factories, ``__post_init__``; ``repr`` of the ``repr=True`` fields; ``==`` and ``hash`` of
  the ``compare=True`` fields (``hash=`` respected) and only between instances of the same
  class; ``hash`` only when ``eq`` and ``frozen`` (``eq`` without ``frozen`` makes instances
  unhashable); ``order`` compares field tuples; frozen instances raise
  ``dataclasses.FrozenInstanceError`` on assignment and deletion. Methods the class body
  defines are kept. ``InitVar`` is not supported (a ``TypeError`` at materialization).
  ``__dataclass_params__`` reports the processing options, not the declared ones.
- Materialization happens before any instance exists: instances are made through
  ``__init__``, which until then is a stand-in that materializes the class. The stand-in is
  replaced by the real ``__init__`` in one assignment, after everything else is in place, so
  a thread instantiating meanwhile waits in the stand-in (on the lock) and never sees a
  half-made class. Bases are materialized first; materialization is idempotent.
- Before materialization the class has no ``__dataclass_fields__``: code that inspects the
  *class* (``dataclasses.fields(cls)``) must call :func:`materialize` first.
"""

from __future__ import annotations

import _thread
import dataclasses
from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError, field
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

_C = TypeVar("_C", bound=type)

#: class attribute holding the pending options; removed when the class is materialized
_PENDING = "__lamina_lazy_dataclass__"

_lock = _thread.RLock()


class _Factory:
    """Default of an ``__init__`` parameter whose field has a ``default_factory``."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


@overload
def lazy_dataclass(cls: _C, /) -> _C: ...


@overload
def lazy_dataclass(
    *,
    frozen: bool = False,
    kw_only: bool = False,
    order: bool = False,
    eq: bool = True,
) -> Callable[[_C], _C]: ...


@dataclass_transform(field_specifiers=(field, Field))
def lazy_dataclass(
    cls: _C | None = None,
    /,
    *,
    frozen: bool = False,
    kw_only: bool = False,
    order: bool = False,
    eq: bool = True,
) -> _C | Callable[[_C], _C]:
    """Mark ``cls`` as a dataclass with these options, made on first instantiation."""
    options = {"frozen": frozen, "kw_only": kw_only, "order": order, "eq": eq}

    def mark(target: _C) -> _C:
        if "__init__" in target.__dict__:
            raise TypeError(f"{target.__qualname__}: a lazy dataclass must not define __init__")
        setattr(target, _PENDING, options)
        target.__init__ = _pending_init(target)  # type: ignore[misc]
        return target

    return mark if cls is None else mark(cls)


def _pending_init(owner: type) -> Callable[..., None]:
    """The stand-in ``__init__``: materialize ``owner``, then run its real ``__init__``."""

    def __init__(self: Any, /, *args: Any, **kwargs: Any) -> None:
        materialize(owner)
        # The real __init__ is in owner's dict now (the stand-in was found there).
        owner.__init__(self, *args, **kwargs)  # type: ignore[misc]

    __init__.__qualname__ = f"{owner.__qualname__}.__init__"
    return __init__


def materialize(cls: type) -> None:
    """Make ``cls`` (and its lazy dataclass bases) a dataclass, if still pending."""
    if _PENDING not in cls.__dict__:
        return
    with _lock:
        options = cls.__dict__.get(_PENDING)
        if options is None:  # another thread finished it while this one waited
            return
        for base in reversed(cls.__mro__[1:]):
            materialize(base)
        dataclasses.dataclass(cls, init=False, repr=False, eq=False, kw_only=options["kw_only"])
        fields = dataclasses.fields(cls)
        pseudo = cls.__dataclass_fields__.values()  # type: ignore[attr-defined]
        if any("InitVar" in str(f.type) for f in pseudo):
            raise TypeError(f"{cls.__qualname__}: InitVar is not supported by lazy_dataclass")
        _add_methods(
            cls, fields, frozen=options["frozen"], eq=options["eq"], order=options["order"]
        )
        init = _make_init(cls, fields, frozen=options["frozen"])
        delattr(cls, _PENDING)
        # Last: from here on nobody reaches the stand-in; those inside it find this one.
        cls.__init__ = init  # type: ignore[misc]


def is_pending(cls: type) -> bool:
    """Whether ``cls`` is a lazy dataclass not materialized yet."""
    return _PENDING in cls.__dict__


def _set(cls: type, name: str, value: Any) -> None:
    """Set a generated method unless the class body defines it (as dataclass does)."""
    if name not in cls.__dict__:
        setattr(cls, name, value)


def _key(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """A function returning the tuple of ``names``' values of an instance."""
    if not names:
        return lambda obj: ()
    if len(names) == 1:
        get = attrgetter(names[0])
        return lambda obj: (get(obj),)
    return attrgetter(*names)


def _add_methods(
    cls: type, fields: tuple[dataclasses.Field[Any], ...], *, frozen: bool, eq: bool, order: bool
) -> None:
    """``__repr__``, ``__eq__``, ``__hash__``, ordering and frozen guards, as shared closures."""
    shown = [f.name for f in fields if f.repr]
    compared = _key([f.name for f in fields if f.compare])
    hashed = _key([f.name for f in fields if (f.compare if f.hash is None else f.hash)])
    names = frozenset(f.name for f in fields)
    busy: set[tuple[int, int]] = set()  # (id, thread) of reprs in progress: cycles print "..."

    def __repr__(self: Any) -> str:
        key = (id(self), _thread.get_ident())
        if key in busy:
            return "..."
        busy.add(key)
        try:
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in shown)
        finally:
            busy.discard(key)
        return f"{type(self).__qualname__}({inner})"

    _set(cls, "__repr__", __repr__)
    if eq:

        def __eq__(self: Any, other: object) -> bool:
            if other.__class__ is self.__class__:
                return compared(self) == compared(other)
            return NotImplemented

        _set(cls, "__eq__", __eq__)
        explicit_hash = "__hash__" in cls.__dict__ and not (
            cls.__dict__["__hash__"] is None and "__eq__" in cls.__dict__
        )
        if not explicit_hash:
            cls.__hash__ = _hasher(hashed) if frozen else None  # type: ignore[assignment]
    if order:
        for name, test in _ORDER.items():
            _set(cls, name, _compare(compared, test))
    if frozen:
        _set(cls, "__setattr__", _frozen_guard(cls, names, "__setattr__"))
        _set(cls, "__delattr__", _frozen_guard(cls, names, "__delattr__"))


def _hasher(key: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(key(self))

    return __hash__


_ORDER: dict[str, Callable[[tuple[Any, ...], tuple[Any, ...]], bool]] = {
    "__lt__": lambda a, b: a < b,
    "__le__": lambda a, b: a <= b,
    "__gt__": lambda a, b: a > b,
    "__ge__": lambda a, b: a >= b,
}


def _compare(
    key: Callable[[Any], tuple[Any, ...]], test: Callable[[tuple[Any, ...], tuple[Any, ...]], bool]
) -> Callable[[Any, object], bool]:
    def compare(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return test(key(self), key(other))
        result: bool = NotImplemented
        return result

    return compare


def _frozen_guard(cls: type, names: frozenset[str], method: str) -> Callable[..., None]:
    """A frozen ``__setattr__``/``__delattr__``: fields, and all of ``cls``'s own instances."""

    def guard(self: Any, name: str, *value: Any) -> None:
        if type(self) is cls or name in names:
            verb = "assign to" if method == "__setattr__" else "delete"
            raise FrozenInstanceError(f"cannot {verb} field {name!r}")
        getattr(super(cls, self), method)(name, *value)

    return guard


def _make_init(
    cls: type, fields: tuple[dataclasses.Field[Any], ...], *, frozen: bool
) -> Callable[..., None]:
    """Compile ``__init__`` for ``fields`` (signature and body as dataclass writes them)."""
    scope: dict[str, Any] = {"__lazy_object__": object, "__lazy_factory__": _FACTORY}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for f in fields:
        default = f"__lazy_default_{f.name}__"
        if f.default_factory is not MISSING:
            scope[default] = f.default_factory
            param, value = (
                f"{f.name}=__lazy_factory__",
                f"{default}() if {f.name} is __lazy_factory__ else {f.name}",
            )
            if not f.init:
                value = f"{default}()"
        elif f.default is not MISSING:
            scope[default] = f.default
            param, value = f"{f.name}={default}", f.name
        else:
            param, value = f.name, f.name
        if f.init:
            (keyword if f.kw_only else positional).append(param)
        elif f.default_factory is MISSING:
            continue  # init=False with a plain default: the class attribute serves
        if frozen:
            body.append(f"__lazy_object__.__setattr__(__lazy_self__, {f.name!r}, {value})")
        else:
            body.append(f"__lazy_self__.{f.name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("__lazy_self__.__post_init__()")
    params = ", ".join(["__lazy_self__", *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({params}):\n" + "".join(f"    {line}\n" for line in body or ["pass"])
    try:
        exec(source, scope)  # source made above from field names only
    except SyntaxError as exc:  # e.g. a field without default after one with
        raise TypeError(f"{cls.__qualname__}: {exc.msg}") from None
    init: Callable[..., None] = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init
