"""The read-only catalog behind ``lamina images`` agrees with the store and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.errors import NotFound
from lamina.image.memory import MemoryImage
from lamina.oci.digest import Digest
from lamina.ops.image import list_images
from lamina.store import Store
from lamina.store.catalog import Catalog
from lamina.testing.layers import file

MakeImage = Callable[..., MemoryImage]


def test_catalog_lists_what_the_store_lists(tmp_path: Path, make_image: MakeImage) -> None:
    store = Store(tmp_path / "root", driver="vfs")
    one = make_image([[file("a", b"a" * 3000)], [file("b", b"b")]], tag="one")
    two = make_image([[file("c", b"c")]], tag="two")
    store.put_image(one, ["one:1", "example.com/x/one:2"])
    store.put_image(two, [])
    catalog = Catalog(store.root)
    assert catalog.list_images() == store.list_images()
    for record in store.list_images():
        for chain in record.layers:
            assert catalog.get_layer(chain).size == store.get_layer(chain).size
    assert list_images(catalog) == list_images(store)
    with pytest.raises(NotFound):
        catalog.get_layer(Digest.of_bytes(b"no such layer"))


def test_catalog_of_a_missing_store_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "nothing-here"
    assert Catalog(root).list_images() == []
    assert list_images(Catalog(root)) == []
    assert not root.exists()
