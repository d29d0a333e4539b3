"""capsule: run untrusted Python inside a WebAssembly sandbox.

    import capsule

    with capsule.Sandbox() as sandbox:
        result = sandbox.run("print(6 * 7)")
        print(result.status, result.stdout)

Bindings (ctypes) to libcapsule, the C library of the capsule project: CPython
3.11 compiled to wasm32-wasi and translated to native code, each run in a
seccomp-filtered worker process.  See Sandbox, Result, Session and
code_sandbox (mcp-run-python's helper).
"""
from ._code_sandbox import CodeSandbox, code_sandbox
from ._native import library_path
from ._sandbox import (
    Artifact,
    CapsuleError,
    HostIOError,
    InvalidArgumentError,
    Mount,
    OutOfMemoryError,
    Result,
    Sandbox,
    SandboxStartError,
    Session,
)

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "CapsuleError",
    "CodeSandbox",
    "HostIOError",
    "InvalidArgumentError",
    "Mount",
    "OutOfMemoryError",
    "Result",
    "Sandbox",
    "SandboxStartError",
    "Session",
    "code_sandbox",
    "library_path",
]
