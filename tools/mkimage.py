#!/usr/bin/env python3
"""Packs a directory tree into a capsule read-only image (see src/vfs/image.c).

Usage: mkimage.py OUTPUT SOURCE_DIR [--exclude GLOB ...]

Build-time tool: it reads only the tree it is given and writes one file.
"""
import argparse
import fnmatch
import os
import struct
import sys

HEADER = struct.Struct("<8sII")
ENTRY = struct.Struct("<IIQQII")
FILE, DIRECTORY = 1, 2


def sort_key(path):
    # Component-wise order: '/' sorts before every other byte.
    return path.encode().replace(b"/", b"\0")


def collect(root, excludes):
    entries = {"": DIRECTORY}
    for directory, dirnames, filenames in os.walk(root):
        relative_dir = os.path.relpath(directory, root)
        relative_dir = "" if relative_dir == "." else relative_dir
        kept = []
        for name in sorted(dirnames):
            path = f"{relative_dir}/{name}".lstrip("/")
            if not any(fnmatch.fnmatch(path, pattern) for pattern in excludes):
                kept.append(name)
                entries[path] = DIRECTORY
        dirnames[:] = kept
        for name in filenames:
            path = f"{relative_dir}/{name}".lstrip("/")
            if any(fnmatch.fnmatch(path, pattern) for pattern in excludes):
                continue
            full = os.path.join(root, path)
            # A link is stored as the file it names, if that lies in the tree.
            inside = os.path.realpath(full).startswith(os.path.realpath(root) + os.sep)
            if os.path.isfile(full) and inside:
                entries[path] = FILE
    return sorted(entries.items(), key=lambda item: sort_key(item[0]))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output")
    parser.add_argument("source")
    parser.add_argument("--exclude", action="append", default=[])
    args = parser.parse_args()

    entries = collect(args.source, args.exclude)
    count = len(entries)
    # subtree_end: index just past the entry's last descendant.
    subtree_end = [0] * count
    stack = []
    for index, (path, _) in enumerate(entries):
        while stack and not path.startswith(entries[stack[-1]][0] + "/") and stack[-1] != 0:
            subtree_end[stack.pop()] = index
        stack.append(index)
    for index in stack:
        subtree_end[index] = count

    strings = bytearray()
    path_offsets = []
    table_end = HEADER.size + ENTRY.size * count
    for path, _ in entries:
        path_offsets.append(table_end + len(strings))
        strings += path.encode()
    data = bytearray()
    data_start = table_end + len(strings)
    records = []
    for index, (path, kind) in enumerate(entries):
        offset, size = data_start, 0
        if kind == FILE:
            with open(os.path.join(args.source, path), "rb") as f:
                content = f.read()
            offset, size = data_start + len(data), len(content)
            data += content
        records.append(ENTRY.pack(path_offsets[index], len(path.encode()), offset, size,
                                  kind, subtree_end[index]))
    with open(args.output + ".tmp", "wb") as out:
        out.write(HEADER.pack(b"CAPIMG01", count, 0))
        out.writelines(records)
        out.write(strings)
        out.write(data)
    os.replace(args.output + ".tmp", args.output)
    print(f"{args.output}: {count} entries, {len(data)} bytes of data", file=sys.stderr)


if __name__ == "__main__":
    main()
