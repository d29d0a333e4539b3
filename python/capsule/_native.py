"""ctypes declarations of include/capsule.h, and where libcapsule is found.

The library is looked for, in order: the path in the CAPSULE_LIBRARY
environment variable; the copy inside this package (a wheel made by
`make wheel` carries capsule/_native/libcapsule.so.0 and stdlib.img); the
system's (`make install`, the Debian package).  libcapsule finds its
standard library image beside itself, in capsule/ beside itself, or beside
the running program, so no path needs configuring in any of these cases.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import pathlib
import threading
from typing import List, Optional

ERROR_SIZE = 256  # CAP_ERROR_SIZE

CAP_OK = 0
CAP_EINVAL = 1
CAP_ENOMEM = 2
CAP_EIO = 3
CAP_ERUNTIME = 4

CAP_STDOUT = 1
CAP_STDERR = 2

CAP_MOUNT_READ_ONLY = 1


class Limits(ctypes.Structure):
    _fields_ = [
        ("wall_seconds", ctypes.c_double),
        ("cpu_seconds", ctypes.c_double),
        ("memory_bytes", ctypes.c_uint64),
        ("output_bytes", ctypes.c_uint64),
        ("disk_bytes", ctypes.c_uint64),
        ("disk_entries", ctypes.c_uint64),
        ("function_calls", ctypes.c_uint32),
        ("function_result_bytes", ctypes.c_uint64),
        ("function_seconds", ctypes.c_double),
    ]


class File(ctypes.Structure):
    _fields_ = [
        ("path", ctypes.c_char_p),
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_size_t),
    ]


class Artifact(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("media_type", ctypes.c_char_p),
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_size_t),
    ]


OUTPUT_FUNCTION = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
PROGRESS_FUNCTION = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)
# approve(userdata, function, arguments_json, reason): reason is a buffer of
# CAP_ERROR_SIZE bytes the approver may fill with why it refused.
APPROVE_FUNCTION = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                    ctypes.c_void_p)
# ask_model(userdata, data, size, media_type, name, question, timeout, error): a
# malloc'd answer; left NULL by the binding (capsule.describe() needs an endpoint).
ASK_MODEL_FUNCTION = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                      ctypes.c_size_t, ctypes.c_char_p, ctypes.c_char_p,
                                      ctypes.c_char_p, ctypes.c_double, ctypes.c_void_p)


class RunOptions(ctypes.Structure):
    _fields_ = [
        ("filename", ctypes.c_char_p),
        ("on_output", OUTPUT_FUNCTION),
        ("userdata", ctypes.c_void_p),
        ("capture", ctypes.c_int),
        ("traceback_to_stderr", ctypes.c_int),
        ("limits", Limits),
        ("files", ctypes.POINTER(File)),
        ("file_count", ctypes.c_size_t),
        ("session", ctypes.c_char_p),
        ("globals_json", ctypes.c_char_p),
        ("return_json", ctypes.c_int),
        ("on_progress", PROGRESS_FUNCTION),
        ("approve", APPROVE_FUNCTION),
        ("idempotency_key", ctypes.c_char_p),
        ("ask_model", ASK_MODEL_FUNCTION),
        ("principal", ctypes.c_char_p),
    ]


def _candidates() -> List[str]:
    found: List[str] = []
    override = os.environ.get("CAPSULE_LIBRARY")
    if override:
        return [override]
    bundled = pathlib.Path(__file__).resolve().parent / "_native" / "libcapsule.so.0"
    if bundled.exists():
        found.append(str(bundled))
    system = ctypes.util.find_library("capsule")
    if system:
        found.append(system)
    found.append("libcapsule.so.0")
    return found


_library: Optional[ctypes.CDLL] = None
_library_lock = threading.Lock()


def _declare(library: ctypes.CDLL) -> None:
    c_int, c_char_p, c_void_p, c_size_t = ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t
    error = ctypes.c_char_p  # a caller buffer of ERROR_SIZE bytes
    signatures = {
        "cap_config_new": (c_void_p, []),
        "cap_config_free": (None, [c_void_p]),
        "cap_config_set_stdlib": (c_int, [c_void_p, c_char_p, error]),
        "cap_config_add_image": (c_int, [c_void_p, c_char_p, c_char_p, error]),
        "cap_config_set_pool_size": (c_int, [c_void_p, c_int, error]),
        "cap_config_set_sessions": (c_int, [c_void_p, c_int, ctypes.c_double, error]),
        "cap_config_set_store": (c_int, [c_void_p, c_char_p, error]),
        "cap_config_set_store_quota": (c_int, [c_void_p, ctypes.c_uint64, error]),
        "cap_config_set_session_ttl": (c_int, [c_void_p, ctypes.c_double, error]),
        "cap_config_add_env": (c_int, [c_void_p, c_char_p, c_char_p, error]),
        "cap_config_set_output_directory": (c_int, [c_void_p, c_char_p, error]),
        "cap_config_add_docs": (c_int, [c_void_p, c_char_p, error]),
        "cap_config_add_http_resource": (c_int, [c_void_p, c_char_p, c_char_p, error]),
        "cap_config_allow_url": (c_int, [c_void_p, c_char_p, error]),
        "cap_config_set_http_limits": (c_int, [c_void_p, ctypes.c_double, c_size_t, error]),
        "cap_config_add_mount": (c_int, [c_void_p, c_char_p, c_char_p, c_int, ctypes.c_uint64, error]),
        "cap_config_add_wheel_directory": (c_int, [c_void_p, c_char_p, error]),
        "cap_config_add_index_url": (c_int, [c_void_p, c_char_p, error]),
        "cap_config_add_site_packages": (c_int, [c_void_p, c_char_p, error]),
        "cap_config_set_package_cache": (c_int, [c_void_p, c_char_p, error]),
        "cap_config_set_start_cache": (c_int, [c_void_p, c_char_p, error]),
        "cap_sandbox_new": (c_int, [c_void_p, ctypes.POINTER(c_void_p), error]),
        "cap_sandbox_free": (None, [c_void_p]),
        "cap_sandbox_run": (c_int, [c_void_p, c_char_p, c_size_t, ctypes.POINTER(RunOptions),
                                    ctypes.POINTER(c_void_p), error]),
        "cap_sandbox_cancel": (c_int, [c_void_p]),
        "cap_result_status": (c_int, [c_void_p]),
        "cap_status_name": (c_char_p, [c_int]),
        "cap_result_exit_code": (c_int, [c_void_p]),
        "cap_result_stdout": (c_void_p, [c_void_p, ctypes.POINTER(c_size_t)]),
        "cap_result_stderr": (c_void_p, [c_void_p, ctypes.POINTER(c_size_t)]),
        "cap_result_return_value": (c_char_p, [c_void_p]),
        "cap_result_error": (c_char_p, [c_void_p]),
        "cap_result_free": (None, [c_void_p]),
        "cap_result_artifact_count": (c_size_t, [c_void_p]),
        "cap_result_artifact": (ctypes.POINTER(Artifact), [c_void_p, c_size_t]),
        "cap_result_dependency_count": (c_size_t, [c_void_p]),
        "cap_result_dependency": (c_char_p, [c_void_p, c_size_t]),
        "cap_result_note_count": (c_size_t, [c_void_p]),
        "cap_result_note": (c_char_p, [c_void_p, c_size_t]),
        "cap_session_close": (c_int, [c_void_p, c_char_p, error]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(library, name)
        function.restype = restype
        function.argtypes = argtypes


def library() -> ctypes.CDLL:
    """libcapsule, loaded once (OSError when none is found)."""
    global _library
    with _library_lock:
        if _library is None:
            failures = []
            for candidate in _candidates():
                try:
                    loaded = ctypes.CDLL(candidate)
                except OSError as exc:
                    failures.append(f"{candidate}: {exc}")
                    continue
                _declare(loaded)
                _library = loaded
                break
            else:
                raise OSError("capsule: libcapsule not found (set CAPSULE_LIBRARY, or install it: "
                              "make install, or the Debian package): " + "; ".join(failures))
        return _library


def library_path() -> str:
    """The file libcapsule was loaded from."""
    return library()._name
