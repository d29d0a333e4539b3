#!/usr/bin/env python3
"""Splits wasm2c 1.0.32's one generated C file into several translation units.

Why: python.c is >100 MB; gcc compiles it in one process (16-18 min, 5.5 GB
for the release object on this 2-core machine) and cannot use a second core.
wabt 1.0.32 has no --num-outputs, so this does the same after the fact.

Contract.  Input: the C that `wasm2c -n MODULE` wrote (after
wasm2c-typed-stores.py), whose top level is, in this order:
  1. the prelude: includes (MODULE.h), macros and static inline helpers;
  2. `static bool s_module_initialized = false;`, `static u32 func_types[K];`
     and `init_func_types`;
  3. one prototype line per defined function, `static T w2c_NAME(...);`;
  4. module code: init_globals, data and elem segments, init_* functions;
  5. the function definitions, each `static T w2c_NAME(Z_MODULE_instance_t*
     instance...` (the signature may wrap) up to a `}` in column 0;
  6. from the first `/* export: ` line: exports, instantiate and free.
Output, in OUTDIR (N >= 1):
  - MODULE-parts.h: the prelude, `func_types` declared extern, and a hidden
    prototype for every function used outside the part that defines it;
  - MODULE-00.c: parts 2, 4 and 6 (the module's shared definitions);
  - MODULE-01.c .. MODULE-NN.c: the definitions of part 5, in their original
    order, cut into N runs of about equal size in bytes, each preceded by
    static prototypes of the functions only it uses.
Every function keeps its body byte for byte; only `static` is dropped from
the ones referenced across parts, which get visibility("hidden") instead
(and so does func_types), so libcapsule.so exports nothing new and calls
between parts stay direct (no PLT) under -fPIC.
Anything not of this shape (another wasm2c version) stops the script with a
message instead of writing C that would compile differently.

Usage: wasm2c-split.py IN.c OUTDIR MODULE N
"""
import os
import re
import sys


def fail(message):
    sys.exit("wasm2c-split: " + message + " (not the shape wabt 1.0.32 writes; update this script)")


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    source_path, outdir, module, parts = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if parts < 1:
        fail("N must be at least 1")
    instance = "Z_%s_instance_t" % module
    lines = open(source_path).read().split("\n")

    # 1 and 2: the prelude ends where the module's own statics begin.
    try:
        flag_at = lines.index("static bool s_module_initialized = false;")
    except ValueError:
        fail("no s_module_initialized")
    types_re = re.compile(r"^static u32 func_types\[(\d+)\];$")
    types_at = next((i for i in range(flag_at, min(flag_at + 4, len(lines)))
                     if types_re.match(lines[i])), None)
    if types_at is None:
        fail("no func_types array after s_module_initialized")
    prelude = lines[:flag_at]
    if '#include "%s.h"' % module not in prelude:
        fail('the prelude does not include "%s.h"' % module)

    # 5 and 6: the function definitions run from the first one to the exports.
    def_re = re.compile(r"^static \S+ (w2c_\w+)\(%s\* instance\b" % instance)
    first_def = next((i for i, line in enumerate(lines) if def_re.match(line)), None)
    if first_def is None:
        fail("no function definitions")
    exports_at = next((i for i in range(first_def, len(lines))
                       if lines[i].startswith("/* export: ")), None)
    if exports_at is None:
        fail("no exports after the function definitions")

    functions = []  # (name, text) in file order
    i = first_def
    while i < exports_at:
        line = lines[i]
        if line == "":
            i += 1
            continue
        match = def_re.match(line)
        if not match:
            fail("line %d in the function definitions is not one: %r" % (i + 1, line[:80]))
        end = i
        while end < exports_at and lines[end] != "}":
            end += 1
        if end == exports_at:
            fail("function %s has no closing brace before the exports" % match.group(1))
        functions.append((match.group(1), "\n".join(lines[i:end + 1])))
        i = end + 1
    if any(def_re.match(line) for line in lines[exports_at:]):
        fail("a function definition after the exports")

    # 3: exactly one prototype per definition, all before the definitions.
    proto_re = re.compile(r"^static \S+ (w2c_\w+)\(.*\);$")
    prototypes = {}
    proto_lines = set()
    for n in range(types_at, first_def):
        match = proto_re.match(lines[n])
        if match:
            if match.group(1) in prototypes:
                fail("two prototypes of " + match.group(1))
            prototypes[match.group(1)] = lines[n]
            proto_lines.add(n)
    names = [name for name, _ in functions]
    if len(set(names)) != len(names):
        fail("a function is defined twice")
    if set(names) != set(prototypes):
        fail("prototypes and definitions differ: %s" % sorted(set(names) ^ set(prototypes))[:5])
    module_lines = [lines[n] for n in range(flag_at, first_def) if n not in proto_lines]
    module_lines += lines[exports_at:]
    module_text = "\n".join(module_lines)

    # The function parts: contiguous runs of about total/N bytes each (the
    # file order follows the link order, so most calls stay within a part).
    total = sum(len(text) for _, text in functions)
    part_of = {}
    members = [[] for _ in range(parts)]
    offset = 0
    for name, text in functions:
        part = min(parts - 1, (offset + len(text) // 2) * parts // total)
        part_of[name] = part
        members[part].append((name, text))
        offset += len(text)

    # Which functions are used outside their own part (the module part
    # counts as another one: elem segments and exports name functions).
    ident_re = re.compile(r"\bw2c_\w+")
    shared = {name for name in set(ident_re.findall(module_text)) if name in part_of}
    for part, run in enumerate(members):
        used = set(ident_re.findall("\n".join(text for _, text in run)))
        shared.update(name for name in used if name in part_of and part_of[name] != part)
    # The module part's code may only use data it keeps itself, and the
    # bodies none of it (segments are static in MODULE-00.c).
    for _, text in functions:
        if "data_segment_data_" in text or "elem_segment_exprs_" in text or "s_module_initialized" in text:
            fail("a function body uses a data or elem segment")

    hidden = '__attribute__((visibility("hidden"))) '
    types_decl = lines[types_at][len("static "):]
    guard = "%s_PARTS_H_GENERATED_" % module.upper()
    header = ["/* Generated by tools/wasm2c-split.py from %s: the prelude of wasm2c's"
              % os.path.basename(source_path),
              "   output and what the parts of the module share (hidden, not exported). */",
              "#ifndef " + guard, "#define " + guard] + prelude
    header.append(hidden + "extern " + types_decl)
    header += [hidden + prototypes[name][len("static "):] for name in names if name in shared]
    header += ["#endif  /* %s */" % guard, ""]

    def write(path, text):
        with open(path + ".tmp", "w") as out:
            out.write(text)
        os.replace(path + ".tmp", path)

    include = '#include "%s-parts.h"\n' % module
    write(os.path.join(outdir, "%s-parts.h" % module), "\n".join(header))
    module_text = module_text.replace(lines[types_at], types_decl, 1)
    write(os.path.join(outdir, "%s-00.c" % module), include + "\n" + module_text)
    for part, run in enumerate(members):
        out = [include]
        out += [prototypes[name] for name, _ in run if name not in shared]
        out.append("")
        for name, text in run:
            out.append(text[len("static "):] if name in shared else text)
            out.append("")
        write(os.path.join(outdir, "%s-%02d.c" % (module, part + 1)), "\n".join(out))
    print("wasm2c-split: %d functions in %d parts, %d shared across parts"
          % (len(functions), parts, len(shared)))


main()
