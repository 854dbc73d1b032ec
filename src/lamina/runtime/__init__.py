"""lamina.runtime: run a process in a rootfs through runc/crun, or natively.

Knows nothing of layers, images or the store: it takes a rootfs *path*. Typical use::

    spec = ContainerSpec(rootfs=rootfs, process=ProcessSpec(args=("sh", "-c", "echo hi")))
    bundle = write_bundle(bundle_dir, spec, container_id=cid)
    runtime = select_runtime(None, state_dir=store_root / "runtime")
    status = runtime.run(bundle, cid, stdout=log)

Modules: :mod:`spec` (ContainerSpec -> config.json), :mod:`defaults` (Docker's tables),
:mod:`bundle` (bundle dirs, mount points, command lookup), :mod:`user` (USER resolution),
:mod:`idmap` (user-namespace maps), :mod:`etcfiles` (hosts/resolv.conf/hostname content),
:mod:`model` (the Runtime protocol), :mod:`oci_runtime` (runc/crun, + :mod:`shim`),
:mod:`native` (+ :mod:`nsinit`, :mod:`mounts`, :mod:`linux`), :mod:`console` (terminals),
:mod:`selection` (select_runtime), :mod:`userns` (the rootless user + mount namespace pair and
its pause process), :mod:`rootless` (specs for a rootless process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lamina._internal.lazy import lazy_exports

if TYPE_CHECKING:
    from lamina.runtime.bundle import Bundle, open_bundle, resolve_command, write_bundle
    from lamina.runtime.idmap import IDMapping, single_id_mappings, subid_mappings
    from lamina.runtime.model import ContainerState, Runtime
    from lamina.runtime.native import NativeRuntime
    from lamina.runtime.oci_runtime import OCIRuntime
    from lamina.runtime.selection import select_runtime
    from lamina.runtime.spec import (
        BindMount,
        ContainerSpec,
        EtcFiles,
        ProcessSpec,
        Rlimit,
        TmpfsMount,
        build_config,
    )
    from lamina.runtime.user import ExecUser, resolve_user

# Imported on first use (PEP 562): a caller that needs only the spec or the user lookup must
# not pay for the native runtime, terminals and the runc wrapper at start-up.
_LAZY: dict[str, str] = {
    "BindMount": "lamina.runtime.spec",
    "Bundle": "lamina.runtime.bundle",
    "ContainerSpec": "lamina.runtime.spec",
    "ContainerState": "lamina.runtime.model",
    "EtcFiles": "lamina.runtime.spec",
    "ExecUser": "lamina.runtime.user",
    "IDMapping": "lamina.runtime.idmap",
    "NativeRuntime": "lamina.runtime.native",
    "OCIRuntime": "lamina.runtime.oci_runtime",
    "ProcessSpec": "lamina.runtime.spec",
    "Rlimit": "lamina.runtime.spec",
    "Runtime": "lamina.runtime.model",
    "TmpfsMount": "lamina.runtime.spec",
    "build_config": "lamina.runtime.spec",
    "open_bundle": "lamina.runtime.bundle",
    "resolve_command": "lamina.runtime.bundle",
    "resolve_user": "lamina.runtime.user",
    "select_runtime": "lamina.runtime.selection",
    "single_id_mappings": "lamina.runtime.idmap",
    "subid_mappings": "lamina.runtime.idmap",
    "write_bundle": "lamina.runtime.bundle",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "BindMount",
    "Bundle",
    "ContainerSpec",
    "ContainerState",
    "EtcFiles",
    "ExecUser",
    "IDMapping",
    "NativeRuntime",
    "OCIRuntime",
    "ProcessSpec",
    "Rlimit",
    "Runtime",
    "TmpfsMount",
    "build_config",
    "open_bundle",
    "resolve_command",
    "resolve_user",
    "select_runtime",
    "single_id_mappings",
    "subid_mappings",
    "write_bundle",
]
