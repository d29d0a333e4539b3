#!/usr/bin/env python3
"""Builds the capsule Python wheel with the standard library only (zipfile):
PyPI is out of reach and no build backend is needed for a package whose one
binary part is libcapsule.so, built by make.

    build-wheel.py --library build/libcapsule.so.0.1.0 --stdlib build/stdlib.img \
                   --output build/dist python

The wheel holds the package (python/capsule), a stripped copy of the library
as capsule/_native/libcapsule.so.0 and the stdlib image beside it, where
libcapsule looks for it.  The wheel is tagged for this platform
(linux_x86_64): the library needs the system's libcjson, libseccomp,
libzstd and libnettle, and loads libcurl, libpq, libsqlite3 and libzip when
first needed (Debian: libcjson1 libseccomp2 libsqlite3-0 libzstd1 libnettle8
libcurl4 libpq5 libzip4), which it does not carry.
"""
import argparse
import base64
import hashlib
import os
import pathlib
import subprocess
import sysconfig
import tempfile
import tomllib
import zipfile

EPOCH = (1980, 1, 1, 0, 0, 0)  # reproducible: no build time in the archive


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def metadata(project: dict, readme: str) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}",
             f"Summary: {project['description']}"]
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Classifier: {c}" for c in project.get("classifiers", [])]
    lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + readme


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--library", required=True)
    parser.add_argument("--stdlib", required=True)
    parser.add_argument("--tzdata", help="the time-zone image, put beside the stdlib image")
    parser.add_argument("--output", required=True)
    parser.add_argument("source")
    args = parser.parse_args()

    source = pathlib.Path(args.source)
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    readme = (source / project.get("readme", "README.md")).read_text()
    name = project["name"].replace("-", "_")
    version = project["version"]
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    tag = f"py3-none-{platform}"
    dist_info = f"{name}-{version}.dist-info"

    with tempfile.TemporaryDirectory() as scratch:
        stripped = pathlib.Path(scratch) / "libcapsule.so.0"
        subprocess.run(["strip", "--strip-unneeded", "-o", str(stripped), args.library], check=True)
        files = []  # (name in the wheel, bytes, executable)
        for path in sorted((source / "capsule").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".typed"):
                files.append((path.relative_to(source).as_posix(), path.read_bytes(), False))
        files.append(("capsule/_native/libcapsule.so.0", stripped.read_bytes(), True))
        files.append(("capsule/_native/stdlib.img", pathlib.Path(args.stdlib).read_bytes(), False))
        if args.tzdata:
            files.append(("capsule/_native/tzdata.img", pathlib.Path(args.tzdata).read_bytes(),
                          False))

    files.append((f"{dist_info}/METADATA", metadata(project, readme).encode(), False))
    files.append((f"{dist_info}/WHEEL", (
        "Wheel-Version: 1.0\nGenerator: capsule packaging/build-wheel.py\n"
        f"Root-Is-Purelib: false\nTag: {tag}\n").encode(), False))
    files.append((f"{dist_info}/top_level.txt", b"capsule\n", False))
    record = "".join(f"{n},{record_hash(d)},{len(d)}\n" for n, d, _ in files)
    record += f"{dist_info}/RECORD,,\n"
    files.append((f"{dist_info}/RECORD", record.encode(), False))

    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    wheel = output / f"{name}-{version}-{tag}.whl"
    partial = wheel.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for entry_name, data, executable in files:
            info = zipfile.ZipInfo(entry_name, EPOCH)
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    os.replace(partial, wheel)
    print(wheel)


if __name__ == "__main__":
    main()
