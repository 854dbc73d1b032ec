"""One generic copy loop from any source to any :class:`~lamina.transports.base.Destination`.

Order: layers (in parallel, a small thread pool; one at a time, in manifest order, for a
format with ``serial_blobs``, such as the archives; a blob the destination already has is
reused), then the config, then child manifests, then the top-level manifest, then commit. A
failure anywhere discards the destination, so no partial image is ever published.

Conversions are chosen by the destination's :class:`~lamina.transports.base.Format` and are
deterministic (the same input gives the same output digests):

- ``media_types="oci"``: Docker schema 2 manifests, manifest lists and configs get the OCI media
  types; a layer whose blob is its plain tar (digest == diff_id, as docker-archive sources
  present them) becomes ``...layer.v1.tar``, gzip layers ``...layer.v1.tar+gzip``, foreign
  layers the non-distributable type. Config bytes are never changed (the image id is kept).
- ``uncompressed_layers``: compressed layers are written as their plain tar (digest = diff_id).
- An image whose descriptors all survive unchanged keeps its manifest bytes (and digest).
- Indexes are copied whole (every platform) where the format stores indexes; otherwise one
  platform is picked (``platform``, default the host's).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, BinaryIO, Literal, cast

from lamina._internal.lazydataclass import lazy_dataclass
from lamina.image.model import Image, ImageIndex, Layer
from lamina.oci import mediatype
from lamina.oci.descriptor import Descriptor
from lamina.oci.manifest import Index, Manifest
from lamina.oci.platform import Platform
from lamina.transports.base import Destination, Format, ImageRef
from lamina.transports.source import child_of, is_index, select_image

if TYPE_CHECKING:
    from concurrent.futures import Future


@lazy_dataclass(frozen=True)
class Progress:
    """One progress event; ``size`` is -1 while unknown (a layer being decompressed)."""

    kind: Literal["layer", "config", "manifest"]
    descriptor: Descriptor
    state: Literal["skipped", "copying", "done"]


ProgressFn = Callable[[Progress], None]


@lazy_dataclass(frozen=True)
class _Plan:
    target: Descriptor
    opener: Callable[[], BinaryIO]
    size_known: bool


class _Copier:
    def __init__(self, dst: Destination, progress: ProgressFn | None, workers: int) -> None:
        self.dst = dst
        self.fmt: Format = dst.format
        self.progress = progress or (lambda _p: None)
        self.workers = 1 if self.fmt.serial_blobs else max(1, workers)

    def image(self, img: Image) -> tuple[bytes, Descriptor]:
        manifest = img.manifest()
        plans = [
            self._plan(layer, desc)
            for layer, desc in zip(img.layers(), manifest.layers, strict=True)
        ]
        layers = self._transfer(plans)
        config = manifest.config
        if self.fmt.media_types == "oci" and config.media_type == mediatype.DOCKER_CONFIG:
            config = replace(config, media_type=mediatype.OCI_CONFIG)
        self._put_small(img.raw_config(), config, "config")
        media_type = img.media_type()
        if self.fmt.media_types == "oci" and media_type == mediatype.DOCKER_MANIFEST:
            media_type = mediatype.OCI_MANIFEST
        unchanged = tuple(layers) == manifest.layers and config == manifest.config
        if unchanged and media_type == img.media_type():
            raw = img.raw_manifest()
            return raw, Descriptor(media_type=media_type, digest=img.digest(), size=len(raw))
        data = Manifest(
            media_type=media_type,
            config=config,
            layers=tuple(layers),
            annotations=manifest.annotations,
            subject=manifest.subject,
            artifact_type=manifest.artifact_type,
        ).to_json()
        return data, Descriptor.of_bytes(media_type, data)

    def index(self, idx: ImageIndex, depth: int = 0) -> tuple[bytes, Descriptor]:
        parsed = idx.index()
        children: list[Descriptor] = []
        for d in parsed.manifests:
            child = child_of(idx, d)
            if is_index(child):
                data, new = self.index(child, depth + 1)
            else:
                data, new = self.image(cast(Image, child))
            self._put_small(data, new, "manifest")
            children.append(
                Descriptor(
                    media_type=new.media_type,
                    digest=new.digest,
                    size=new.size,
                    annotations=d.annotations,
                    platform=d.platform,
                    urls=d.urls,
                    artifact_type=d.artifact_type,
                )
            )
        media_type = parsed.media_type or mediatype.OCI_INDEX
        if self.fmt.media_types == "oci":
            media_type = mediatype.OCI_INDEX
        raw = idx.raw_manifest()
        if tuple(children) == parsed.manifests and media_type == (parsed.media_type or media_type):
            return raw, Descriptor(media_type=media_type, digest=idx.digest(), size=len(raw))
        data = Index(
            manifests=tuple(children), media_type=media_type, annotations=parsed.annotations
        ).to_json()
        return data, Descriptor.of_bytes(media_type, data)

    def _plan(self, layer: Layer, desc: Descriptor) -> _Plan:
        plain = layer.digest() == layer.diff_id()
        if self.fmt.uncompressed_layers and not plain:
            target = Descriptor(media_type=mediatype.OCI_LAYER, digest=layer.diff_id(), size=-1)
            plan = _Plan(target, layer.open_uncompressed, False)
            plain = True
        else:
            plan = _Plan(desc, layer.open_compressed, True)
        media_type = plan.target.media_type
        if self.fmt.media_types == "oci":
            media_type = oci_layer_type(desc.media_type, plain)
        elif not plan.size_known:
            media_type = desc.media_type
        return replace(plan, target=replace(plan.target, media_type=media_type))

    def _transfer(self, plans: Sequence[_Plan]) -> list[Descriptor]:
        unique = {p.target.digest: p for p in plans}
        done: dict[object, Descriptor] = {}
        # imported here: concurrent.futures loads logging, traceback and queue, which a build
        # that copies nothing (its FROM is in the store) never needs
        from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures: dict[Future[Descriptor], object] = {
                pool.submit(self._transfer_one, p): key for key, p in unique.items()
            }
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for f in finished:
                if f.exception() is not None:
                    for other in futures:
                        other.cancel()
                    raise f.exception()  # type: ignore[misc]
            for f, key in futures.items():
                done[key] = f.result()
        return [replace(p.target, size=done[p.target.digest].size) for p in plans]

    def _transfer_one(self, plan: _Plan) -> Descriptor:
        target = plan.target
        have = self.dst.blob_size(target.digest)
        if have is not None and (not plan.size_known or have == target.size):
            final = replace(target, size=have)
            self.progress(Progress("layer", final, "skipped"))
            return final
        self.progress(Progress("layer", target, "copying"))
        with plan.opener() as stream:
            final = self.dst.put_blob(stream, target, verify_size=plan.size_known)
        self.progress(Progress("layer", final, "done"))
        return final

    def _put_small(
        self, data: bytes, desc: Descriptor, kind: Literal["config", "manifest"]
    ) -> None:
        if self.dst.has_blob(desc):
            self.progress(Progress(kind, desc, "skipped"))
            return
        self.dst.put_blob(io.BytesIO(data), desc)
        self.progress(Progress(kind, desc, "done"))


def oci_layer_type(media_type: str, plain: bool) -> str:
    """The OCI media type for a layer of ``media_type`` whose blob is plain tar or not."""
    foreign = media_type in (mediatype.DOCKER_LAYER_FOREIGN, mediatype.OCI_LAYER_NONDIST_GZIP)
    if plain:
        if foreign or "nondistributable" in media_type:
            return "application/vnd.oci.image.layer.nondistributable.v1.tar"
        return mediatype.OCI_LAYER
    if media_type == mediatype.DOCKER_LAYER_GZIP:
        return mediatype.OCI_LAYER_GZIP
    if media_type == mediatype.DOCKER_LAYER_FOREIGN:
        return mediatype.OCI_LAYER_NONDIST_GZIP
    return media_type


def copy_image(
    src: ImageRef | Image | ImageIndex,
    dst: Destination,
    *,
    names: Sequence[str] = (),
    platform: Platform | None = None,
    progress: ProgressFn | None = None,
    workers: int = 3,
) -> Descriptor:
    """Copy ``src`` into ``dst``, commit it, and return the top-level manifest's descriptor.

    ``names`` override the name the destination's reference carries. ``progress`` is called
    from worker threads. On any error ``dst`` is discarded and the error re-raised.
    """
    try:
        item = src.open() if isinstance(src, ImageRef) else src
        copier = _Copier(dst, progress, workers)
        if is_index(item) and dst.format.indexes:
            data, desc = copier.index(item)
        else:
            image = select_image(item, platform, str(src)) if is_index(item) else item
            data, desc = copier.image(cast(Image, image))
        dst.put_manifest(data, desc, tuple(names))
        copier.progress(Progress("manifest", desc, "done"))
        dst.commit()
        return desc
    except BaseException:
        dst.discard()
        raise


def copy(
    src: ImageRef | Image | ImageIndex,
    dst: ImageRef,
    *,
    names: Sequence[str] = (),
    platform: Platform | None = None,
    progress: ProgressFn | None = None,
) -> Descriptor:
    """``copy_image`` into a new destination of ``dst``."""
    with dst.destination() as d:
        return copy_image(src, d, names=names, platform=platform, progress=progress)
