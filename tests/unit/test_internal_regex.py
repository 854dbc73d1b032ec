"""LazyPattern: compiled on first use, then the same results as the ``re.Pattern`` it wraps."""

from __future__ import annotations

import re

import pytest

from lamina._internal.regex import LazyPattern

SOURCE = r"(?P<key>[a-z]+)=(?P<value>\d*)"
TEXTS = ["", "a=1", "x a=1 bb=22 c=", "A=1", "a=1b=2", "==", "k=12345 z=9"]


def test_nothing_is_compiled_before_the_first_use() -> None:
    broken = LazyPattern("(")  # re.compile would raise here
    assert broken.pattern == "("
    with pytest.raises(re.error):
        broken.match("x")


@pytest.mark.parametrize("text", TEXTS)
def test_every_method_agrees_with_re(text: str) -> None:
    lazy, real = LazyPattern(SOURCE, re.IGNORECASE), re.compile(SOURCE, re.IGNORECASE)

    def spans(m: re.Match[str] | None) -> object:
        return None if m is None else (m.span(), m.groupdict())

    assert spans(lazy.match(text)) == spans(real.match(text))
    assert spans(lazy.match(text, 2)) == spans(real.match(text, 2))
    assert spans(lazy.fullmatch(text)) == spans(real.fullmatch(text))
    assert spans(lazy.search(text)) == spans(real.search(text))
    assert spans(lazy.search(text, 1, 5)) == spans(real.search(text, 1, 5))
    assert lazy.sub(r"\g<value>", text) == real.sub(r"\g<value>", text)
    assert lazy.sub(lambda m: m["key"].upper(), text, 1) == real.sub(
        lambda m: m["key"].upper(), text, 1
    )
    assert lazy.split(text) == real.split(text)
    assert lazy.split(text, 1) == real.split(text, 1)
    assert lazy.findall(text) == real.findall(text)
    assert [spans(m) for m in lazy.finditer(text)] == [spans(m) for m in real.finditer(text)]
    assert lazy.compiled() is lazy.compiled()
    assert lazy.compiled().flags == real.flags
