"""``plan_init``: which RUN mount points the chain's diff dirs surely lack (no mount needed).

Each case is a stack of real directories laid out as overlay lower layers (top first); the
kernel's view of the same stacks is checked in tests/integration/test_build_run_mountpoints.py.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lamina.build.initlower import plan_init

POINTS = [("/proc", True), ("/dev", True), ("/sys", True), ("/etc/resolv.conf", False),
          ("/etc/hostname", False), ("/etc/hosts", False)]  # fmt: skip


def layer(base: Path, name: str, dirs: tuple[str, ...] = (), files: tuple[str, ...] = ()) -> Path:
    root = base / name
    root.mkdir()
    for d in dirs:
        (root / d).mkdir(parents=True)
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text("x")
    return root


def whiteout(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))


def planned(lowers: list[Path]) -> list[str]:
    return [rel for rel, _, _ in plan_init(lowers, POINTS)]


def test_scratch_needs_every_mount_point_with_no_parent_metadata() -> None:
    plan = plan_init([], POINTS)
    assert [(rel, is_dir) for rel, is_dir, _ in plan] == [(p.lstrip("/"), d) for p, d in POINTS]
    assert [metas for _, _, metas in plan][-1] == [None]


def test_debian_like_image_lacks_only_hosts_and_parent_metadata_is_the_image_dir(
    tmp_path: Path,
) -> None:
    top = layer(tmp_path, "l0", dirs=("proc", "dev", "sys"),
                files=("etc/resolv.conf", "etc/hostname"))  # fmt: skip
    os.chmod(top / "etc", 0o751)
    os.utime(top / "etc", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    plan = plan_init([top], POINTS)
    assert [(rel, is_dir) for rel, is_dir, _ in plan] == [("etc/hosts", False)]
    (meta,) = plan[0][2]
    assert meta is not None and stat.S_IMODE(meta.st_mode) == 0o751
    assert meta.st_mtime_ns == 1_600_000_000_000_000_000


def test_layers_merge_and_the_topmost_directory_gives_the_metadata(tmp_path: Path) -> None:
    top = layer(tmp_path, "top", dirs=("etc",))
    os.chmod(top / "etc", 0o700)
    low = layer(tmp_path, "low", dirs=("proc", "dev", "sys"), files=("etc/hosts",))
    plan = {rel: metas for rel, _, metas in plan_init([top, low], POINTS)}
    assert sorted(plan) == ["etc/hostname", "etc/resolv.conf"]  # hosts comes from below
    meta = plan["etc/hostname"][0]
    assert meta is not None and stat.S_IMODE(meta.st_mode) == 0o700


def test_a_whiteout_hides_what_is_below(tmp_path: Path) -> None:
    top = layer(tmp_path, "top", dirs=("proc", "dev", "sys", "etc"))
    whiteout(top / "etc" / "hosts")
    low = layer(tmp_path, "low", files=("etc/hosts", "etc/hostname", "etc/resolv.conf"))
    assert planned([top, low]) == ["etc/hosts"]


def test_a_file_over_a_directory_ends_the_merge(tmp_path: Path) -> None:
    top = layer(tmp_path, "top", dirs=("proc", "dev", "sys", "etc"))
    mid = layer(tmp_path, "mid", files=("etc",))  # hidden by top's directory, hides low
    low = layer(tmp_path, "low", files=("etc/hosts",))
    assert planned([top, mid, low]) == ["etc/resolv.conf", "etc/hostname", "etc/hosts"]


def test_doubt_means_not_planned(tmp_path: Path) -> None:
    # symlinks (resolved in the mounted tree), a file where a directory is needed
    top = layer(tmp_path, "top", dirs=("proc", "etc"), files=("sys",))
    os.symlink("../run/resolv.conf", top / "etc" / "resolv.conf")
    os.symlink("/run/dev", top / "dev")
    assert planned([top]) == ["etc/hostname", "etc/hosts"]


def test_opaque_or_redirected_directories_are_left_to_the_mounted_check(tmp_path: Path) -> None:
    top = layer(tmp_path, "top", dirs=("proc", "dev", "sys", "etc"))
    low = layer(tmp_path, "low", files=("etc/hosts",))
    os.setxattr(top / "etc", "user.overlay.opaque", b"y")
    assert planned([top, low]) == []
    os.removexattr(top / "etc", "user.overlay.opaque")
    os.setxattr(top / "etc", "user.overlay.redirect", b"/other")
    assert planned([top, low]) == []
    os.removexattr(top / "etc", "user.overlay.redirect")
    assert planned([top, low]) == ["etc/resolv.conf", "etc/hostname"]
    os.setxattr(top, "user.overlay.opaque", b"y")  # an opaque layer root: nothing planned
    assert planned([top, low]) == []


def test_paths_are_normalised_and_never_leave_the_root(tmp_path: Path) -> None:
    top = layer(tmp_path, "top", dirs=("etc",))
    plan = plan_init([top], [("//etc/./hosts", False), ("/../x", True), ("/", True)])
    assert [rel for rel, _, _ in plan] == ["etc/hosts"]
