"""Docker image names: ``[domain/]path[:tag][@digest]`` with Docker's defaults.

The grammar is the one of the distribution project's ``reference`` package::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain "/"] path-component ["/" path-component]*
    domain           := host [":" port-number]
    host             := domain-name | "[" IPv6address "]"
    domain-name      := domain-component ["." domain-component]*
    domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    path-component   := alpha-numeric [separator alpha-numeric]*
    alpha-numeric    := /[a-z0-9]+/
    separator        := /[_.]|__|[-]+/
    tag              := /[\\w][\\w.-]{0,127}/
    digest           := algorithm ":" hex

Docker's normalisation (what ``docker pull busybox`` means): the first component is a domain
only if it contains ``.`` or ``:``, is ``localhost``, or has upper-case letters; otherwise the
domain is ``docker.io`` (``index.docker.io`` is an alias of it), and single-component docker.io
names get ``library/``. A reference without a tag or digest gets the tag ``latest``.

Invariants: a :class:`Reference` is always fully normalised; ``parse(str(ref)) == ref`` and
``parse(ref.familiar()) == ref``. The full name (domain and path) is at most 255 characters.
Digests are validated by :class:`lamina.oci.Digest` (sha256/sha512 only).
"""

from __future__ import annotations

import re
from dataclasses import replace

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.errors import ImageError, InvalidReference
from lamina.oci.digest import Digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_PATH_RE = re.compile(_PATH)
_DOMAIN_RE = re.compile(_DOMAIN)
_TAG_RE = re.compile(_TAG)
_IMAGE_ID_RE = re.compile(r"[a-f0-9]{64}")

_HINT = "use [registry[:port]/]name[:tag][@sha256:digest], e.g. docker.io/library/busybox:latest"


@lazy_dataclass(frozen=True, kw_only=True)
class Reference:
    """A normalised image reference. ``str()`` gives the full canonical form.

    ``tag`` is None only when a digest pins the image; ``path`` never starts with the domain.
    """

    domain: str
    path: str
    tag: str | None = DEFAULT_TAG
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """``domain/path`` without tag or digest (the repository)."""
        return f"{self.domain}/{self.path}"

    def familiar_name(self) -> str:
        """The repository as ``docker images`` shows it (``busybox``, ``me/app``, ``r:5000/x``)."""
        if self.domain == DEFAULT_DOMAIN:
            return self.path.removeprefix(OFFICIAL_PREFIX)
        return self.name

    def familiar(self) -> str:
        """Short form: ``busybox:latest``, ``me/app:1``, ``myreg:5000/x/y:tag``, ``x@sha256:…``."""
        return self.familiar_name() + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        """A copy with ``tag`` (validated) and no digest."""
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReference(f"invalid tag {tag!r}", hint="tags match [\\w][\\w.-]{0,127}")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: Digest) -> Reference:
        """A copy pinned to ``digest`` (the tag is kept)."""
        return replace(self, digest=digest)

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag is not None else ""
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def __str__(self) -> str:
        return self.name + self._suffix()


def _split_domain(name: str) -> tuple[str, str]:
    """Docker's rule for telling a registry domain from the first path component."""
    first, sep, rest = name.partition("/")
    if not sep or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return domain, path


def _split_tag(text: str) -> tuple[str, str | None]:
    """Split ``name[:tag]``; a colon followed by a ``/`` later is a port, not a tag."""
    colon = text.rfind(":")
    if colon > text.rfind("/"):
        return text[:colon], text[colon + 1 :]
    return text, None


def _parse_digest(text: str, whole: str) -> Digest:
    if not re.fullmatch(_DIGEST, text):
        raise InvalidReference(
            f"invalid reference {whole!r}: invalid digest {text!r}",
            hint="digests look like sha256:<64 lowercase hex digits>",
        )
    try:
        return Digest.parse(text)
    except ImageError as exc:
        raise InvalidReference(f"invalid reference {whole!r}: {exc.message}") from None


def _lowercase_hint(text: str, name: str) -> str:
    """Suggest the name in lowercase (the tag and digest kept as they are) when that parses;
    else the format hint: lowercasing alone would not make ``text`` valid."""
    suggestion = name.lower() + text[len(name) :]
    try:
        parse(suggestion)
    except InvalidReference:
        return _HINT
    return f"try {suggestion!r}"


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise an image reference; raise InvalidReference with a hint otherwise.

    With ``default_tag`` (the default) a reference with neither tag nor digest gets ``latest``.
    """
    if not isinstance(text, str) or not text:
        raise InvalidReference("invalid reference: empty name", hint=_HINT)
    if _IMAGE_ID_RE.fullmatch(text):
        raise InvalidReference(
            f"invalid repository name {text!r}: cannot be a 64-character hexadecimal string",
            hint="to refer to an image by id, use sha256:<id> where ids are accepted",
        )
    rest, at, digest_text = text.partition("@")
    digest = _parse_digest(digest_text, text) if at else None
    name, tag = _split_tag(rest)
    if tag is not None and not _TAG_RE.fullmatch(tag):
        raise InvalidReference(
            f"invalid reference {text!r}: invalid tag {tag!r}",
            hint="tags are 1-128 characters of letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-'",
        )
    domain, path = _split_domain(name)
    if path.lower() != path:
        raise InvalidReference(
            f"invalid reference {text!r}: repository name must be lowercase",
            hint=_lowercase_hint(text, name),
        )
    if not _DOMAIN_RE.fullmatch(domain) or not _PATH_RE.fullmatch(path):
        raise InvalidReference(f"invalid reference format {text!r}", hint=_HINT)
    if len(domain) + 1 + len(path) > NAME_MAX:
        raise InvalidReference(
            f"invalid reference {text[:80]!r}...: repository name must not be more than "
            f"{NAME_MAX} characters"
        )
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def is_valid_tag(tag: str) -> bool:
    """True if ``tag`` matches the tag grammar."""
    return _TAG_RE.fullmatch(tag) is not None
