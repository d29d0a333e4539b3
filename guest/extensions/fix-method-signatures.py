"""Copies C extension sources, giving every Python method the parameters
CPython calls it with.

Why: CPython calls a METH_NOARGS method as f(self, NULL).  Natively a C
function declared f(self) ignores the extra argument, and many extensions
(Pillow among them) rely on that; in WebAssembly an indirect call whose
signature differs from the callee's traps ("invalid indirect call").  So a
method registered in a PyMethodDef table, `{"name", (PyCFunction)f, FLAGS}`,
whose definition takes fewer parameters than FLAGS implies (NOARGS, O,
VARARGS: 2; VARARGS|KEYWORDS: 3) gets unused ones appended.

Usage: fix-method-signatures.py OUT_DIR FILE.c...   (writes OUT_DIR/FILE.c)
Prints what it changed; fails when a registered function's definition is
not found in the same file (a table entry that cannot be checked).
"""
import pathlib
import re
import sys

ENTRY = re.compile(r'\{\s*"[^"]*"\s*,\s*\(\s*PyCFunction\s*\)\s*\(?\s*(\w+)\s*\)?\s*,\s*([A-Z_|\s]+?)\s*[,}]')
DEFINITION = r'^(?P<head>(?:static\s+)?(?:PyObject\s*\*\s*)?){name}\s*\((?P<params>[^)]*)\)\s*\{{'


def expected(flags):
    flags = {f.strip() for f in flags.split("|")}
    return 3 if "METH_KEYWORDS" in flags else 2


def fix(text, path):
    changes = []
    for name, flags in sorted(set(ENTRY.findall(text))):
        wanted = expected(flags)
        pattern = re.compile(DEFINITION.format(name=re.escape(name)), re.M)
        match = pattern.search(text)
        if not match:
            if re.search(r'\b' + re.escape(name) + r'\s*\(', text) is None:
                sys.exit(f"fix-method-signatures: {path}: no definition of {name}")
            continue  # defined by a macro or elsewhere: left as it is
        params = [p.strip() for p in match.group("params").split(",") if p.strip()]
        if params == ["void"] or len(params) >= wanted:
            continue
        added = [f"PyObject *capsule_unused{i}" for i in range(len(params), wanted)]
        new = ", ".join(params + added)
        start, end = match.span("params")
        text = text[:start] + new + text[end:]
        changes.append(f"{name}({new})")
    return text, changes


def main():
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[2:]:
        source = pathlib.Path(name)
        text, changes = fix(source.read_text(encoding="latin-1"), source)
        (out / source.name).write_text(text, encoding="latin-1")
        for change in changes:
            print(f"fix-method-signatures: {source.name}: {change}", file=sys.stderr)


if __name__ == "__main__":
    main()
