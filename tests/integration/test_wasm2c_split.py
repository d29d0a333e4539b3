"""tools/wasm2c-split.py on a small module: the same wasm2c and gcc as the
guest's build, so that a change of either that the post-pass does not
expect shows here in seconds rather than after a 20-minute build.

The module has calls within and across parts, an indirect call through the
table (func_types, elem segment) and a data segment; its parts are compiled
like python-NN.o (-fPIC) and linked with wasm2c's runtime into a program
whose answers are checked, and the symbols they export are checked too.
"""
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPLIT = ROOT / "tools" / "wasm2c-split.py"
TYPED_STORES = ROOT / "tools" / "wasm2c-typed-stores.py"
RUNTIME = pathlib.Path("/usr/src/wasm2c")
PYTHON = "/usr/bin/python3"
GENERATED_CFLAGS = ["-O2", "-fno-optimize-sibling-calls", "-frounding-math", "-fsignaling-nans",
                    f"-I{RUNTIME}"]

MODULE = """
(module
  (type $unary (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\\2a\\00\\00\\00")
  (table 4 funcref)
  (elem (i32.const 1) $double $square)
  (func $double (type $unary) (i32.mul (local.get 0) (i32.const 2)))
  (func $square (type $unary) (i32.mul (local.get 0) (local.get 0)))
  (func $helper (param i32) (result i32) (i32.add (local.get 0) (i32.load (i32.const 16))))
  (func $store (param i32) (i32.store (i32.const 32) (local.get 0)))
  (func $apply (param i32 i32) (result i32)
    (call_indirect (type $unary) (local.get 0) (local.get 1)))
  (func (export "run") (param i32) (result i32)
    (call $store (call $helper (local.get 0)))
    (i32.add (call $apply (i32.load (i32.const 32)) (i32.const 1))
             (call $apply (local.get 0) (i32.const 2))))
)
"""

MAIN = """
#include <stdio.h>
#include "demo.h"
#include "wasm-rt-impl.h"
int main(void) {
  wasm_rt_init();
  Z_demo_init_module();
  Z_demo_instance_t instance;
  Z_demo_instantiate(&instance);
  if (wasm_rt_impl_try() != 0) {
    puts("trap");
    return 1;
  }
  /* run(x) = 2 * (x + 42) + x * x */
  printf("%u %u\\n", Z_demoZ_run(&instance, 3), Z_demoZ_run(&instance, 10));
  Z_demo_free(&instance);
  wasm_rt_free();
  return 0;
}
"""


def _tools():
    for tool in ("wat2wasm", "wasm2c", "gcc", "readelf"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    if not (RUNTIME / "wasm-rt-impl.c").exists():
        pytest.skip("wasm2c's runtime sources are not installed")


def _translate(tmp_path):
    (tmp_path / "demo.wat").write_text(MODULE)
    subprocess.run(["wat2wasm", "--debug-names", "demo.wat", "-o", "demo.wasm"], cwd=tmp_path, check=True)
    subprocess.run(["wasm2c", "demo.wasm", "-n", "demo", "-o", "demo.raw.c"], cwd=tmp_path, check=True)
    subprocess.run([PYTHON, str(TYPED_STORES), "demo.raw.c", "demo.c"], cwd=tmp_path, check=True)
    (tmp_path / "demo.raw.h").rename(tmp_path / "demo.h")
    source = tmp_path / "demo.c"
    source.write_text(source.read_text().replace('"demo.raw.h"', '"demo.h"'))


def test_split_parts_compile_link_and_compute_the_same(tmp_path):
    _tools()
    _translate(tmp_path)
    parts = 3
    split = subprocess.run([PYTHON, str(SPLIT), "demo.c", ".", "demo", str(parts)], cwd=tmp_path,
                           capture_output=True, text=True)
    assert split.returncode == 0, split.stderr
    assert "6 functions in 3 parts" in split.stdout, split.stdout
    sources = [f"demo-{n:02d}.c" for n in range(parts + 1)]
    for name in sources:
        subprocess.run(["gcc", *GENERATED_CFLAGS, "-fPIC", "-c", name, "-o", name[:-2] + ".o"],
                       cwd=tmp_path, check=True)
    # Each function body is in exactly one part, unchanged but for `static`.
    whole = (tmp_path / "demo.c").read_text()
    split_text = "".join((tmp_path / name).read_text() for name in sources[1:])
    for name in ("w2c_double", "w2c_square", "w2c_helper", "w2c_apply"):
        start = whole.index(f"static u32 {name}(Z_demo_instance_t* instance")
        body = whole[start + len("static "):whole.index("\n}\n", start) + 2]
        assert split_text.count(body) == 1, name

    (tmp_path / "main.c").write_text(MAIN)
    subprocess.run(["gcc", *GENERATED_CFLAGS, "-o", "demo", "main.c", str(RUNTIME / "wasm-rt-impl.c"),
                    *[n[:-2] + ".o" for n in sources], "-lm"], cwd=tmp_path, check=True)
    out = subprocess.run(["./demo"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(2 * 45 + 9), str(2 * 52 + 100)]

    # What the parts share is hidden: only the module's exports (Z_demo*)
    # are global with default visibility, as with the single file.
    shared = []
    for name in sources:
        table = subprocess.run(["readelf", "-sW", name[:-2] + ".o"], cwd=tmp_path,
                               capture_output=True, text=True, check=True).stdout
        for row in table.split("\n"):
            fields = row.split()
            if len(fields) == 8 and fields[4] == "GLOBAL" and fields[6] != "UND":
                if fields[5] == "DEFAULT":
                    assert fields[7].startswith("Z_demo"), row
                else:
                    assert fields[5] == "HIDDEN", row
                    shared.append(fields[7])
    assert "func_types" in shared and "w2c_apply" in shared, shared


def test_split_refuses_input_of_another_shape(tmp_path):
    _tools()
    _translate(tmp_path)
    source = tmp_path / "demo.c"
    source.write_text(source.read_text().replace("static u32 func_types[", "static u32 types_of_funcs["))
    split = subprocess.run([PYTHON, str(SPLIT), "demo.c", ".", "demo", "2"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert split.returncode != 0
    assert "func_types" in split.stderr and "update this script" in split.stderr
    assert not (tmp_path / "demo-00.c").exists()
