#!/usr/bin/env python3
"""Writes the C source of CPython's own documentation that `help` ships
(src/help/help.h's help_python_docs), from the guest's standard library as
guest/build-stdlib.sh staged it under build/stdlib:

    python3 tools/extract-python-docs.py OUT.c build/stdlib

Three kinds of entry, each {path, title, text}:

- the language reference topics of pydoc_data/topics.py ("with", "for",
  "exceptions", ...): path "pydoc:topics/NAME";
- each public module of the guest's library (the stdlib, Pillow, capsule):
  its docstring's first paragraphs and the one-line summaries of its
  public functions and classes (and of their public methods): path the
  module's name ("gzip", "xml.etree.ElementTree");
- the built-in functions and types, and the few modules written only in C
  (math, itertools, ...), whose docstrings no .py file holds: path
  "builtins.NAME" or the module's name.

The guest's files are only parsed (ast), never imported or executed: they
are what the guest will run, not what this host should.  The built-ins come
from this host's own interpreter, and only when it is the guest's version
(3.11), so that they say what the guest does.
"""
import ast
import inspect
import os
import pathlib
import sys

MAX_MODULE_TEXT = 6000   # bytes of a module's entry
MAX_DOC_PARAGRAPHS = 3   # of a module's docstring
MAX_METHODS = 25         # summaries of a class's methods
# Not documented: tests, build tools, the IDE, GUI toolkits, deprecated trees.
SKIPPED = {"__pycache__", "lib-dynload", "site-packages", "test", "tests", "idlelib", "tkinter",
           "turtledemo", "lib2to3", "ensurepip", "distutils", "msilib", "venv", "pydoc_data",
           "lxml"}
C_MODULES = ["math", "cmath", "itertools", "time", "sys", "gc", "binascii", "zlib",
             "unicodedata", "array", "select", "errno", "marshal"]


def first_line(doc):
    for line in (doc or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def paragraphs(doc, count):
    parts = [part.strip() for part in inspect.cleandoc(doc or "").split("\n\n") if part.strip()]
    return "\n\n".join(parts[:count])


def signature(node):
    """`name(a, b=..., *args, **kw)` of a def, from its ast."""
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args]
    defaults = len(args.defaults)
    shown = [f"{n}=..." if i >= len(names) - defaults else n for i, n in enumerate(names)]
    if names and names[0] in ("self", "cls"):
        shown = shown[1:]
    if args.vararg:
        shown.append("*" + args.vararg.arg)
    elif args.kwonlyargs:
        shown.append("*")
    shown += [a.arg for a in args.kwonlyargs]
    if args.kwarg:
        shown.append("**" + args.kwarg.arg)
    return f"{node.name}({', '.join(shown)})"


def public_names(tree):
    """The module's __all__ when it is a literal list, else None."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                 for t in node.targets)):
            try:
                return set(ast.literal_eval(node.value))
            except (ValueError, SyntaxError, TypeError):
                return None
    return None


def module_entry(name, source):
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    doc = ast.get_docstring(tree) or ""
    exported = public_names(tree)
    lines = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if node.name.startswith("_") or (exported is not None and node.name not in exported):
            continue
        summary = first_line(ast.get_docstring(node))
        if isinstance(node, ast.ClassDef):
            lines.append(f"class {name}.{node.name}: {summary}".rstrip(": "))
            methods = [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
                       and not m.name.startswith("_")][:MAX_METHODS]
            for method in methods:
                lines.append(f"  {node.name}.{signature(method)}: "
                             f"{first_line(ast.get_docstring(method))}".rstrip(": "))
        else:
            lines.append(f"{name}.{signature(node)}: {summary}".rstrip(": "))
    if not doc and not lines:
        return None
    text = paragraphs(doc, MAX_DOC_PARAGRAPHS)
    if lines:
        text += ("\n\n" if text else "") + "Functions and classes:\n" + "\n".join(lines)
    text = text.encode()[:MAX_MODULE_TEXT].decode(errors="ignore")
    title = f"Python module {name}" + (f": {first_line(doc)}" if doc else "")
    return (name, title, text)


def library_modules(root):
    """(module name, path) of each public module under `root`."""
    for directory, folders, files in os.walk(root):
        relative = pathlib.Path(directory).relative_to(root)
        folders[:] = sorted(f for f in folders if f not in SKIPPED and not f.startswith(("_", "."))
                            and "." not in f and (pathlib.Path(directory, f, "__init__.py").exists()))
        if relative.parts and not pathlib.Path(directory, "__init__.py").exists():
            continue
        for file in sorted(files):
            if not file.endswith(".py") or (file.startswith("_") and file != "__init__.py"):
                continue
            parts = list(relative.parts) + ([] if file == "__init__.py" else [file[:-3]])
            if parts:
                yield ".".join(parts), pathlib.Path(directory, file)


def topic_entries(root):
    tree = ast.parse((root / "pydoc_data" / "topics.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "topics":
            topics = ast.literal_eval(node.value)
            for key in sorted(topics):
                text = topics[key].strip()
                heading = first_line(text)
                yield (f"pydoc:topics/{key}", f"Python language reference: {heading}", text)


def builtin_entries():
    """The host's built-ins and C-only modules, when the host is 3.11."""
    if sys.version_info[:2] != (3, 11):
        return
    import builtins
    import importlib
    for name in sorted(dir(builtins)):
        if name.startswith("_"):
            continue
        value = getattr(builtins, name)
        doc = inspect.getdoc(value) or ""
        if not doc or not (callable(value)):
            continue
        kind = "exception" if isinstance(value, type) and issubclass(value, BaseException) else \
            "type" if isinstance(value, type) else "function"
        text = paragraphs(doc, MAX_DOC_PARAGRAPHS)
        if isinstance(value, type) and kind == "type":
            methods = [m for m in sorted(vars(value)) if not m.startswith("_")][:40]
            summaries = [f"  {name}.{m}: {first_line(inspect.getdoc(getattr(value, m)))}"
                         for m in methods if inspect.getdoc(getattr(value, m, None))]
            if summaries:
                text += "\n\nMethods:\n" + "\n".join(summaries)
        yield (f"builtins.{name}", f"Python built-in {kind} {name}: {first_line(doc)}",
               text.encode()[:MAX_MODULE_TEXT].decode(errors="ignore"))
    for module_name in C_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        lines = []
        for name in sorted(dir(module)):
            value = getattr(module, name)
            if not name.startswith("_") and callable(value) and inspect.getdoc(value):
                lines.append(f"{module_name}.{name}: {first_line(inspect.getdoc(value))}")
        text = paragraphs(inspect.getdoc(module), MAX_DOC_PARAGRAPHS)
        if lines:
            text += "\n\nFunctions and classes:\n" + "\n".join(lines)
        yield (module_name, f"Python module {module_name}: {first_line(inspect.getdoc(module))}",
               text.encode()[:MAX_MODULE_TEXT].decode(errors="ignore"))


def c_string(text):
    out = []
    for line in text.encode().split(b"\n"):
        part = ""
        for byte in line:
            if byte == 0x5C:
                part += "\\\\"
            elif byte == 0x22:
                part += '\\"'
            elif 0x20 <= byte < 0x7F and byte != 0x3F:  # '?' escaped: no trigraphs
                part += chr(byte)
            else:
                part += f"\\{byte:03o}"
        out.append(part)
    return "\n".join(f'        "{part}\\n"' for part in out[:-1]) + \
        (f'\n        "{out[-1]}"' if out[-1] or len(out) == 1 else "")


def main():
    out, root = sys.argv[1], pathlib.Path(sys.argv[2])
    entries = list(topic_entries(root))
    seen = set()
    for name, path in library_modules(root):
        entry = module_entry(name, path.read_bytes())
        if entry:
            entries.append(entry)
            seen.add(name)
    entries += [entry for entry in builtin_entries() if entry[0] not in seen]
    parts = ["/* Generated by tools/extract-python-docs.py from the guest's stdlib: do not edit. */",
             f'#include "{os.path.relpath("src/help/help.h", os.path.dirname(os.path.abspath(out)))}"',
             "", "const help_python_doc help_python_docs[] = {"]
    for path, title, text in entries:
        parts.append(f"    {{{c_string(path).strip()},\n     {c_string(title).strip()},\n{c_string(text)}}},")
    parts += ["};", f"const int help_python_doc_count = {len(entries)};", ""]
    pathlib.Path(out).write_text("\n".join(parts))


main()
