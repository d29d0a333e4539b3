#!/usr/bin/env python3
"""Lets the host skip copying the data segments at instantiation.

wasm2c 1.0.32's instantiate copies every active data segment into the new
linear memory (init_memories: 4.6 MB for python.wasm: 1,150 pages faulted
in and written).  A zygote that maps a start image over the whole memory
right after throws all of it away, and that copy was about a third of a
cold `capsule run`.  This moves the segments' LOAD_DATA lines out of
init_memories into an exported function,
`void Z_MODULE_load_data_segments(Z_MODULE_instance_t*)`, which the host
calls when it does not replace the memory (src/runtime/runtime.c,
runtime_load_data).  Instantiating without calling it leaves the segments'
bytes zero: the host must call it, or replace the memory, before any
guest code runs.

Usage: wasm2c-deferred-data.py MODULE IN.c OUT.c IN.h OUT.h
(fails if init_memories is not the shape wabt 1.0.32 writes)
"""
import re
import sys


def fail(message):
    sys.exit("wasm2c-deferred-data: " + message + "; update this script for the new wasm2c")


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    module, source_in, source_out, header_in, header_out = sys.argv[1:]
    instance = "Z_%s_instance_t" % module
    source = open(source_in).read()
    pattern = re.compile(
        r"static void init_memories\(%s\* instance\) \{\n"
        r"(  wasm_rt_allocate_memory\(&instance->w2c_memory, [^\n]*\);\n)"
        r"((?:  LOAD_DATA\(instance->w2c_memory, [^\n]*\);\n)+)"
        r"\}\n" % re.escape(instance))
    found = pattern.findall(source)
    if len(found) != 1:
        fail("init_memories is not one memory allocation and its LOAD_DATA lines")
    allocate, loads = found[0]
    function = "%s_load_data_segments" % ("Z_" + module)
    replacement = ("static void init_memories(%s* instance) {\n%s}\n\n"
                   "/* Copies the data segments in (wasm2c-deferred-data.py). */\n"
                   "void %s(%s* instance) {\n%s}\n" % (instance, allocate, function, instance, loads))
    source = pattern.sub(lambda _: replacement, source)
    header = open(header_in).read()
    declaration = "void Z_%s_instantiate(" % module
    if header.count(declaration) != 1:
        fail("the header does not declare Z_%s_instantiate once" % module)
    header = header.replace(declaration, "void %s(%s*);\n%s" % (function, instance, declaration))
    with open(source_out, "w") as out:
        out.write(source)
    with open(header_out, "w") as out:
        out.write(header)


main()
