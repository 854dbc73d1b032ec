"""``RUN --mount=...`` specs -> :class:`Mount` (BuildKit ``ParseMount``).

The value is a CSV list of ``key=value`` fields (``ro``/``rw``/``required`` may stand alone).
Types: bind (default), cache, tmpfs, secret, ssh. Invariants: unknown keys, bad values and
keys that do not apply to the type are errors; ``read_only`` defaults to True for bind,
secret and ssh and to False for cache and tmpfs; cache ``sharing`` defaults to ``shared``.
"""

from __future__ import annotations

from collections.abc import Callable

from lamina._internal.lazydataclass import lazy_dataclass
from lamina._internal.sizes import ram_in_bytes
from lamina.dockerfile.flags import with_suggestion

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
SHARING_MODES = ("shared", "private", "locked")
_ALL_KEYS = (
    "type", "from", "source", "target", "readonly", "id", "sharing", "required", "size",
    "mode", "uid", "gid", "src", "dst", "destination", "ro", "rw", "readwrite", "env",
)  # fmt: skip
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class MountError(ValueError):
    """A ``--mount`` value that cannot be parsed."""


@lazy_dataclass(frozen=True, kw_only=True)
class Mount:
    """One RUN mount. ``source``/``from_`` are unexpanded only if no expander was given."""

    type: str = "bind"
    from_: str = ""
    source: str = ""
    target: str = ""
    read_only: bool = True
    cache_id: str = ""
    sharing: str = ""
    required: bool = False
    size_limit: int | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    env: str | None = None


def _parse_bool(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise MountError(f"invalid value for {key}: {value}")


def _parse_size(value: str) -> int:
    size = ram_in_bytes(value)
    if size is None:
        raise MountError(f"invalid size: '{value}'")
    return size


def _parse_uint(value: str, base: int, what: str) -> int:
    try:
        number = int(value, base)
    except ValueError:
        number = -1
    if not 0 <= number < 1 << 32 or not value.isalnum():
        raise MountError(f"invalid value {value} for {what}")
    return number


def parse_mount(value: str, expand: Callable[[str], str] | None = None) -> Mount:
    """Parse one ``--mount`` value; ``expand`` (if given) expands each field value."""
    import csv  # here: most Dockerfiles have no RUN --mount

    try:
        fields = next(csv.reader([value]), [])
    except csv.Error as exc:
        raise MountError(f"invalid mount: {exc}") from exc
    kv: dict[str, object] = {"type": "bind"}
    ro_auto = True
    for field_text in fields:
        key, eq, val = field_text.partition("=")
        key = key.lower()
        mtype = str(kv["type"])
        if not eq and key in ("readonly", "ro", "readwrite", "rw", "required"):
            val = "true"
        elif not eq:
            raise MountError(f"invalid field '{field_text}' must be a key=value pair")
        elif expand is not None:
            val = expand(val)
        if key == "type":
            if val.lower() not in MOUNT_TYPES:
                msg = f"unsupported mount type {_q(val)}"
                raise MountError(with_suggestion(msg, val, MOUNT_TYPES))
            kv["type"] = val.lower()
        elif key in ("from", "source", "src", "target", "dst", "destination", "id"):
            name = {"src": "source", "dst": "target", "destination": "target", "id": "cache_id"}
            kv[{"from": "from_"}.get(key, name.get(key, key))] = val
        elif key in ("readonly", "ro", "readwrite", "rw"):
            flag = _parse_bool(key, val)
            kv["read_only"] = flag if key in ("readonly", "ro") else not flag
            ro_auto = False
        elif key == "required":
            if mtype not in ("secret", "ssh"):
                raise MountError(f"unexpected key '{key}' for mount type '{mtype}'")
            kv["required"] = _parse_bool(key, val)
        elif key == "sharing":
            if val.lower() not in SHARING_MODES:
                raise MountError(f"unsupported sharing value {_q(val)}")
            kv["sharing"] = val.lower()
        elif key == "size":
            if mtype != "tmpfs":
                raise MountError(f"unexpected key '{key}' for mount type '{mtype}'")
            kv["size_limit"] = _parse_size(val)
        elif key == "mode":
            kv["mode"] = _parse_uint(val, 8, "mode")
        elif key in ("uid", "gid"):
            kv[key] = _parse_uint(val, 10, key)
        elif key == "env":
            if mtype != "secret":
                raise MountError(f"unexpected key '{key}' for mount type '{mtype}'")
            kv["env"] = val
        else:
            msg = f"unexpected key '{key}' in '{field_text}'"
            raise MountError(with_suggestion(msg, key, _ALL_KEYS))
    return _finish(kv, ro_auto)


def _finish(kv: dict[str, object], ro_auto: bool) -> Mount:
    mtype = str(kv["type"])
    if mtype not in ("secret", "ssh", "cache"):
        for key in ("mode", "uid", "gid"):
            if kv.get(key) is not None:
                raise MountError(f"{key} not allowed for {_q(mtype)} type mounts")
    if ro_auto:
        kv["read_only"] = mtype not in ("cache", "tmpfs")
    if kv.get("sharing") and mtype != "cache":
        raise MountError(f"invalid cache sharing set for {mtype} mount")
    if mtype == "cache" and not kv.get("sharing"):
        kv["sharing"] = "shared"
    if mtype == "secret":
        if kv.get("from_"):
            raise MountError("secret mount should not have a from")
        if kv.get("source") and kv.get("cache_id"):
            raise MountError("both source and id can't be set")
    if mtype in ("bind", "cache", "tmpfs") and not kv.get("target"):
        raise MountError(f"mount target is required for {mtype} mounts")
    return Mount(**kv)  # type: ignore[arg-type]


def _q(s: str) -> str:
    from lamina.dockerfile.dump import go_quote

    return go_quote(s)
