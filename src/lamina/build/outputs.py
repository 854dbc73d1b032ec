"""The result of a build: the final image, stored and tagged, and the ``--output`` exporters.

:func:`final_image` assembles the target stage's state into an in-memory OCI image whose layer
blobs are files of the store (base layers keep their compressed blobs; layers built here are
their plain tar, digest == diff_id — local images need nothing more, and no build waits on
gzip). :func:`store_image` puts it into the store under the ``-t`` names (idempotent: every
layer is already there). Exporters (``--output type=...,dest=...``):

==================  ===============================================================
``image``/default   the local store only
``oci``             an OCI layout directory (``dest``; tag ``name`` or the first -t)
``oci-archive``     a tar of an OCI layout
``docker-archive``  ``docker save`` format, ``RepoTags`` = the -t names
``local``           the flattened filesystem, copied into directory ``dest``
``tar``             the flattened filesystem as one tar file
``registry``        pushed to each ``name=`` (default: the -t names); = ``image,push=true``
==================  ===============================================================

``name=`` may list several references separated by commas (BuildKit's
``"name=r/a:1,r/b:2"``). Pushing is done by the ops layer (:func:`push_names` says where).

OCI exports (``oci``, ``oci-archive``) compress the layers built here
(attribute ``compression=gzip|zstd|uncompressed``, default gzip, deterministic): the compressed
blob is written once into the store's blob store and recorded against the layer, so the next
export (or a push) reuses it instead of compressing again — Docker's behaviour.

Invariants: file outputs are written to a temp name beside ``dest`` and renamed when
complete (a failed export leaves no half-written file); the flattened view is unmounted
whatever happens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path

from lamina import reference, transports
from lamina._internal.compression import open_compressor
from lamina._internal.fileio import atomic_output
from lamina._internal.lazydataclass import lazy_dataclass
from lamina.build.steps.base import StageState
from lamina.build.workspace import open_view
from lamina.errors import BuildError, UsageError
from lamina.image.memory import FileLayer, MemoryImage
from lamina.image.model import Layer
from lamina.oci import mediatype
from lamina.oci.config import ImageConfig
from lamina.oci.digest import Digest
from lamina.store import Store, chain_ids
from lamina.store.layerdb import BlobRef

OUTPUT_TYPES = (
    "image",
    "docker",
    "registry",
    "oci",
    "oci-archive",
    "docker-archive",
    "local",
    "tar",
)
_BOOLS = {"true": True, "1": True, "false": False, "0": False}


@lazy_dataclass(frozen=True, kw_only=True)
class OutputSpec:
    """One ``--output``: its type, destination and extra attributes (``name``)."""

    type: str
    dest: str | None = None
    attrs: Mapping[str, str] = field(default_factory=dict)


def parse_output(text: str) -> OutputSpec:
    """Parse ``type=oci,dest=out`` (a bare path means ``type=local,dest=PATH``)."""
    if "=" not in text:
        return OutputSpec(type="local", dest=text)
    import csv  # here: a build without --output never parses one

    fields: dict[str, str] = {}
    last = ""
    for item in next(csv.reader([text])):  # CSV, as BuildKit: "name=a,b" is one field
        key, eq, value = item.partition("=")
        if not eq and last == "name":  # unquoted name=a,b: a second name
            fields["name"] += "," + item
            continue
        if not eq:
            raise UsageError(f"invalid --output {text!r}: {item!r} is not key=value")
        last = key.strip().lower()
        fields[last] = value
    kind = fields.pop("type", "")
    if kind not in OUTPUT_TYPES:
        raise UsageError(
            f"invalid --output {text!r}: unknown type {kind!r}",
            hint="use type=" + "|".join(OUTPUT_TYPES),
        )
    dest = fields.pop("dest", None)
    if kind not in ("image", "docker", "registry") and not dest:
        raise UsageError(f"invalid --output {text!r}: dest=PATH is required for {kind}")
    return OutputSpec(type=kind, dest=dest, attrs=fields)


def push_names(outputs: Sequence[OutputSpec], tags: Sequence[str], push: bool) -> list[str]:
    """The references a build pushes to, in order, without repeats: every -t name for
    ``--push``; a ``type=registry`` output's (or a ``type=image,push=true`` one's) ``name=``
    list, else the -t names. UsageError when a push has no name to go to."""
    names: list[str] = list(tags) if push else []
    wanted = push
    for spec in outputs:
        flag = spec.attrs.get("push", "false").lower()
        if flag not in _BOOLS:
            raise UsageError(f"invalid --output push={flag!r}", hint="use push=true or false")
        if spec.type == "registry" or (spec.type in ("image", "docker") and _BOOLS[flag]):
            given = [n.strip() for n in spec.attrs.get("name", "").split(",") if n.strip()]
            names += given or list(tags)
            wanted = True
    if wanted and not names:
        raise UsageError(
            "nothing to push: the image has no name", hint="add -t NAME or name=REF to --output"
        )
    return list(dict.fromkeys(names))


def final_image(
    store: Store, state: StageState, *, created: str, labels: Mapping[str, str]
) -> MemoryImage:
    """The image of ``state`` (``labels`` added to its config) with store-backed layers."""
    config = {k: v for k, v in state.config.items() if v is not None or k in ("Cmd",)}
    if labels:
        config["Labels"] = {**(config.get("Labels") or {}), **labels}
    image_config = ImageConfig(
        architecture=state.architecture,
        os=state.os,
        variant=state.variant,
        created=created,
        author=state.author,
        config=config,
        diff_ids=tuple(layer.diff_id for layer in state.layers),
        history=tuple(state.history),
    )
    layers = []
    for layer in state.layers:
        desc = layer.descriptor
        path = store.blobs.path(desc.digest)
        if not path.is_file():
            raise BuildError(f"layer blob {desc.digest} is missing from the store")
        layers.append(
            FileLayer(
                path,
                digest=desc.digest,
                size=desc.size,
                diff_id=layer.diff_id,
                media_type=desc.media_type,
            )
        )
    return MemoryImage(image_config, layers)


def store_image(store: Store, image: MemoryImage, tags: Sequence[str]) -> Digest:
    """Put the built image into the store under ``tags``; returns its manifest digest."""
    return store.put_image(image, [str(reference.parse(t)) for t in tags])


def export(
    store: Store,
    image: MemoryImage,
    state: StageState,
    spec: OutputSpec,
    *,
    tags: Sequence[str],
    epoch: int | None,
) -> None:
    """Write one ``--output`` (see the module docstring)."""
    if spec.type in ("image", "docker", "registry"):
        return  # stored already; pushes are the ops layer's (push_names)
    assert spec.dest is not None
    dest = Path(spec.dest)
    names = [spec.attrs["name"]] if spec.attrs.get("name") else list(tags)
    if spec.type in ("oci", "oci-archive"):  # docker-archive stores plain tars anyway
        image = compressed_image(store, image, spec.attrs.get("compression", "gzip"))
    if spec.type == "oci":
        tag = reference.parse(names[0]).tag if names else None
        if dest.exists() and not dest.is_dir():
            raise UsageError(f"--output type=oci: {dest} exists and is not a directory")
        transports.copy(image, transports.parse(f"oci:{dest}:{tag or 'latest'}"))
    elif spec.type in ("oci-archive", "docker-archive"):
        with atomic_output(dest) as tmp:
            transports.copy(image, transports.parse(f"{spec.type}:{tmp}"), names=names)
    elif spec.type == "local":
        _export_local(store, state, dest)
    else:
        from lamina.snapshot import write_layer

        with atomic_output(dest) as tmp, open_view(store, state.chain) as view, tmp.open("wb") as f:
            write_layer(view, f, kind="dir", epoch=epoch)


def _export_local(store: Store, state: StageState, dest: Path) -> None:
    import subprocess

    dest.mkdir(parents=True, exist_ok=True)
    with open_view(store, state.chain) as view:
        proc = subprocess.run(
            ["cp", "-a", "--reflink=auto", "--no-target-directory", f"{view}/.", str(dest)],
            capture_output=True,
            check=False,
        )
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise BuildError(f"exporting the filesystem to {dest}: {err}")


def compressed_image(store: Store, image: MemoryImage, compression: str) -> MemoryImage:
    """``image`` with its uncompressed layers compressed (cached per layer in the store)."""
    kind = {"uncompressed": "none", "none": "none", "gzip": "gzip", "zstd": "zstd"}.get(compression)
    if kind is None:
        raise UsageError(f"unknown compression {compression!r}", hint="use gzip, zstd or none")
    if kind == "none":
        return image
    config = image.config()
    layers = []
    for layer, chain in zip(image.layers(), chain_ids(config.diff_ids), strict=True):
        if layer.media_type() != mediatype.OCI_LAYER:
            layers.append(layer)
            continue
        ref = _compressed_blob(store, layer, chain, kind)
        layers.append(
            FileLayer(
                store.blobs.path(ref.digest),
                digest=ref.digest,
                size=ref.size,
                diff_id=layer.diff_id(),
                media_type=ref.media_type,
            )
        )
    return MemoryImage(config, layers)


def _compressed_blob(store: Store, layer: Layer, chain: Digest, kind: str) -> BlobRef:
    media_type = mediatype.oci_layer_type(kind)
    record = store.layers.get(chain)
    for ref in record.blobs:
        if ref.media_type == media_type and store.blobs.has(ref.digest):
            return ref
    with store.blobs.begin() as ingest, layer.open_uncompressed() as tar:
        writer = open_compressor(ingest, kind)  # type: ignore[arg-type]
        while chunk := tar.read(1 << 20):
            writer.write(chunk)
        writer.close()
        digest, size = ingest.commit()
    ref = BlobRef(digest=digest, media_type=media_type, size=size)
    with store.locked():
        store.layers.db.add_blob(chain, ref)
    return ref
