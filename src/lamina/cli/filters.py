"""``--filter KEY=VALUE`` for ``ps`` and ``images``, with the docker CLI's rules.

- Several values of one key are alternatives (``status=exited --filter status=created``: either),
  except ``label``, where every given label must be present; different keys must all match.
- ``ps``: ``id`` (prefix), ``name`` (regular expression searched in the name, as Docker),
  ``label`` (``KEY`` or ``KEY=VALUE``), ``status`` (Docker's states; a status or ``exited``
  filter lists stopped containers without ``-a``, as Docker), ``exited`` (exit code),
  ``ancestor`` (the image name the container was made from, or a prefix of its image id).
- ``images``: ``dangling`` (``true``/``false``), ``reference`` (a shell pattern matched against
  ``REPOSITORY`` and ``REPOSITORY:TAG``).

An unknown key, a malformed filter or a bad value is a usage error naming it, never an empty
listing that looks like a real answer. Matching is pure: it reads only the records given.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Sequence
from typing import Any

from lamina.errors import UsageError

PS_KEYS = ("ancestor", "exited", "id", "label", "name", "status")
IMAGE_KEYS = ("dangling", "reference")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")

Filters = dict[str, list[str]]


def parse(specs: Sequence[str], keys: Collection[str]) -> Filters:
    """``KEY=VALUE`` strings -> {key: [values]}; UsageError for anything else."""
    out: Filters = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip().lower()
        if not sep or key not in keys:
            raise UsageError(
                f"invalid filter {spec!r}", hint=f"use KEY=VALUE with KEY one of {', '.join(keys)}"
            )
        out.setdefault(key, []).append(value)
    _validate(out)
    return out


def _validate(filters: Filters) -> None:
    for value in filters.get("status", []):
        if value not in STATUSES:
            raise UsageError(
                f"invalid filter 'status={value}'", hint=f"use one of {', '.join(STATUSES)}"
            )
    for value in filters.get("exited", []):
        if not value.lstrip("-").isdigit():
            raise UsageError(f"invalid filter 'exited={value}'", hint="give an exit code")
    for value in filters.get("dangling", []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise UsageError(f"invalid filter 'dangling={value}'", hint="use true or false")
    for value in filters.get("name", []):
        try:
            re.compile(value)
        except re.error as exc:
            raise UsageError(f"invalid filter 'name={value}': {exc}") from None


def lists_stopped(filters: Filters) -> bool:
    """A ``status`` or ``exited`` filter shows stopped containers without ``-a``."""
    return "status" in filters or "exited" in filters


def container_matches(
    filters: Filters, cid: str, record: dict[str, Any], state: dict[str, Any]
) -> bool:
    """Whether the container ``cid`` (its record and refreshed state) passes ``filters``."""
    labels = (record.get("Config") or {}).get("Labels") or {}
    for key, values in filters.items():
        if key == "label":
            if not all(_has_label(labels, v) for v in values):
                return False
        elif not any(_container_one(key, v, cid, record, state) for v in values):
            return False
    return True


def _has_label(labels: dict[str, Any], spec: str) -> bool:
    key, sep, value = spec.partition("=")
    return key in labels and (not sep or str(labels[key]) == value)


def _container_one(
    key: str, value: str, cid: str, record: dict[str, Any], state: dict[str, Any]
) -> bool:
    if key == "id":
        return cid.startswith(value)
    if key == "name":
        return re.search(value, str(record.get("Name", "")).removeprefix("/")) is not None
    if key == "status":
        return state.get("Status") == value
    if key == "exited":
        return state.get("Status") == "exited" and state.get("ExitCode") == int(value)
    # ancestor: the name given at create (normalised both ways) or the image id
    prefix = value.removeprefix("sha256:")
    if prefix and str(record.get("Image", "")).removeprefix("sha256:").startswith(prefix):
        return True
    given = str((record.get("Config") or {}).get("Image", ""))
    return _same_name(given, value)


def _same_name(a: str, b: str) -> bool:
    from lamina import reference
    from lamina.errors import InvalidReference

    try:
        return str(reference.parse(a)) == str(reference.parse(b))
    except InvalidReference:
        return a == b


def image_matches(filters: Filters, repository: str, tag: str) -> bool:
    """Whether an ``images`` row (``<none>`` for a dangling image) passes ``filters``."""
    for value in filters.get("dangling", []):
        dangling = repository == "<none>"
        if dangling != (value.lower() in ("true", "1")):
            return False
    patterns = filters.get("reference", [])
    return not patterns or any(
        fnmatch.fnmatchcase(repository, p) or fnmatch.fnmatchcase(f"{repository}:{tag}", p)
        for p in patterns
    )
