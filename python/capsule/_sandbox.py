"""Sandbox, Session and Result: the library API (include/capsule.h) in Python.

A Sandbox is a warm zygote process: CPython initialised once, forked for each
run.  Every run gets a fresh interpreter in its own seccomp-filtered worker,
unless it names a session.  One sandbox serves one run at a time: calls from
several threads wait for each other (use one Sandbox per thread for
parallelism).  The ctypes calls release the GIL, so other Python threads and
an asyncio loop (run_async) keep running meanwhile.
"""
from __future__ import annotations

import asyncio
import ctypes
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from . import _native

__all__ = [
    "Artifact",
    "CapsuleError",
    "HostIOError",
    "InvalidArgumentError",
    "Mount",
    "OutOfMemoryError",
    "Result",
    "Sandbox",
    "SandboxStartError",
    "Session",
]


# --- errors of the API (guest failures are results, not exceptions) ----------

class CapsuleError(Exception):
    """A libcapsule call failed: `code` is its CAP_E* value."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(CapsuleError, ValueError):
    """CAP_EINVAL: a bad argument (an unknown session, a malformed URL...)."""


class OutOfMemoryError(CapsuleError, MemoryError):
    """CAP_ENOMEM: the host ran out of memory."""


class HostIOError(CapsuleError):
    """CAP_EIO: a host file (the stdlib image, a mounted directory) could not be read."""


class SandboxStartError(CapsuleError):
    """CAP_ERUNTIME: the runtime could not start the guest."""


_ERRORS = {
    _native.CAP_EINVAL: InvalidArgumentError,
    _native.CAP_ENOMEM: OutOfMemoryError,
    _native.CAP_EIO: HostIOError,
    _native.CAP_ERUNTIME: SandboxStartError,
}


def _check(code: int, error: Any, what: str) -> None:
    if code != _native.CAP_OK:
        message = error.value.decode("utf-8", "replace") if error.value else what
        raise _ERRORS.get(code, CapsuleError)(code, message)


def _error_buffer() -> Any:
    return ctypes.create_string_buffer(_native.ERROR_SIZE)


def _bytes(text: Union[str, bytes, "os.PathLike[str]"]) -> bytes:
    if isinstance(text, bytes):
        return text
    return str(text).encode()


# --- results -------------------------------------------------------------------

@dataclass(frozen=True)
class Artifact:
    """A file the run left in the artifacts directory (/output)."""

    name: str        # path relative to the artifacts directory
    media_type: str  # "text/csv", "image/png", ...; "application/octet-stream" if unknown
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Result:
    """One run's outcome: the fields of `capsule run --json`.

    status is "success", "run-error", "install-error", "timeout", "cpu-limit",
    "memory-limit", "output-limit", "disk-limit", "trap", "crash",
    "session-error" or "cancelled".
    """

    status: str
    exit_code: int
    stdout: str
    stderr: str
    return_value: Optional[str]  # repr() of the last expression statement
    error: Optional[str]         # the traceback, or which limit stopped the run
    dependencies: List[str] = field(default_factory=list)  # "name==version"
    artifacts: List[Artifact] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # e.g. a C accelerator left out

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def to_dict(self) -> Dict[str, Any]:
        """The object `capsule run --json` prints (artifacts without their data)."""
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "return_value": self.return_value,
            "error": self.error,
            "dependencies": list(self.dependencies),
            "notes": list(self.notes),
            "artifacts": [{"name": a.name, "media_type": a.media_type, "size": a.size}
                          for a in self.artifacts],
        }


def _text(pointer: Optional[int], size: int) -> str:
    return ctypes.string_at(pointer, size).decode("utf-8", "replace") if pointer and size else ""


def _optional_text(value: Optional[bytes]) -> Optional[str]:
    return None if value is None else value.decode("utf-8", "replace")


def _read_result(lib: ctypes.CDLL, handle: int) -> Result:
    size = ctypes.c_size_t()
    stdout = _text(lib.cap_result_stdout(handle, ctypes.byref(size)), size.value)
    stderr = _text(lib.cap_result_stderr(handle, ctypes.byref(size)), size.value)
    artifacts = []
    for index in range(lib.cap_result_artifact_count(handle)):
        item = lib.cap_result_artifact(handle, index).contents
        artifacts.append(Artifact(
            name=item.name.decode("utf-8", "replace"),
            media_type=item.media_type.decode("utf-8", "replace"),
            data=ctypes.string_at(item.data, item.size) if item.size else b"",
        ))
    dependencies = [lib.cap_result_dependency(handle, i).decode("utf-8", "replace")
                    for i in range(lib.cap_result_dependency_count(handle))]
    notes = [lib.cap_result_note(handle, i).decode("utf-8", "replace")
             for i in range(lib.cap_result_note_count(handle))]
    return Result(
        status=lib.cap_status_name(lib.cap_result_status(handle)).decode(),
        exit_code=lib.cap_result_exit_code(handle),
        stdout=stdout,
        stderr=stderr,
        return_value=_optional_text(lib.cap_result_return_value(handle)),
        error=_optional_text(lib.cap_result_error(handle)),
        dependencies=dependencies,
        artifacts=artifacts,
        notes=notes,
    )


# --- configuration -------------------------------------------------------------

@dataclass(frozen=True)
class Mount:
    """A host directory at a guest path; every access is made by the host,
    beneath the directory.  Read-only unless read_only=False, when the guest
    may grow it by quota_bytes (0: 256 MiB)."""

    host: str
    guest: str
    read_only: bool = True
    quota_bytes: int = 0


class _Ticket:
    """One call of run(), so that cancelling an asyncio task stops that run
    and never the one another task started."""

    cancelled = False


OutputHandler = Callable[[str, bytes], None]  # ("stdout" | "stderr", data)
ProgressHandler = Callable[[str], None]


class Sandbox:
    """A warm sandbox.  Every keyword maps to one cap_config_* call:

    stdlib: the standard library image (default: found beside libcapsule);
    images: {guest_path: image_file} more read-only images;
    pool_size: idle pre-forked workers (default 2);
    max_sessions, session_idle_seconds: sessions kept (default 8, 600 s);
    store: "sqlite:PATH" or a postgres:// URL: sessions are durable (their
    state is saved after each run and outlives this process), and
    store_quota bounds its bytes, and a parked session unused for
    session_ttl seconds expires (docs/sessions.md);
    env: the guest environment (nothing of the host's is passed);
    output_directory: the artifacts directory (default "/output");
    docs: a host directory of markdown files, read-only at /docs;
    network: {name: url} files under /network fetched by the host;
    allow_urls: URL prefixes those fetches may reach (nothing by default);
    http_timeout, http_max_bytes: per fetch (default 10 s, 8 MiB);
    mounts: host directories (Mount);
    wheel_directories, index_urls, site_packages: sources from which the
    imports of each run are installed (pure-Python distributions);
    package_cache: a directory keeping downloads and environments;
    start_cache: a directory keeping the interpreter's state after start-up
    ("start images", docs/sessions.md): a sandbox created again maps it
    instead of initialising CPython (≈ 100 ms less).  Off by default.
    """

    def __init__(
        self,
        *,
        stdlib: Optional[str] = None,
        images: Optional[Mapping[str, str]] = None,
        pool_size: Optional[int] = None,
        max_sessions: Optional[int] = None,
        session_idle_seconds: Optional[float] = None,
        env: Optional[Mapping[str, str]] = None,
        output_directory: Optional[str] = None,
        docs: Optional[str] = None,
        network: Optional[Mapping[str, str]] = None,
        allow_urls: Iterable[str] = (),
        http_timeout: Optional[float] = None,
        http_max_bytes: Optional[int] = None,
        mounts: Iterable[Mount] = (),
        wheel_directories: Iterable[str] = (),
        index_urls: Iterable[str] = (),
        site_packages: Iterable[str] = (),
        package_cache: Optional[str] = None,
        start_cache: Optional[str] = None,
        store: Optional[str] = None,
        store_quota: Optional[int] = None,
        session_ttl: Optional[float] = None,
    ) -> None:
        self._lib = _native.library()
        self._handle: Optional[int] = None
        self._run_lock = threading.Lock()    # one run at a time (capsule.h)
        self._state_lock = threading.Lock()  # guards _current
        self._current: Optional[_Ticket] = None
        lib = self._lib
        config = lib.cap_config_new()
        if not config:
            raise OutOfMemoryError(_native.CAP_ENOMEM, "capsule: out of memory")
        error = _error_buffer()
        try:
            calls: List[Tuple[Any, Tuple[Any, ...]]] = []
            if stdlib is not None:
                calls.append((lib.cap_config_set_stdlib, (_bytes(stdlib),)))
            for guest, image in (images or {}).items():
                calls.append((lib.cap_config_add_image, (_bytes(image), _bytes(guest))))
            if pool_size is not None:
                calls.append((lib.cap_config_set_pool_size, (pool_size,)))
            if max_sessions is not None or session_idle_seconds is not None:
                calls.append((lib.cap_config_set_sessions,
                              (8 if max_sessions is None else max_sessions,
                               600.0 if session_idle_seconds is None else float(session_idle_seconds))))
            if store is not None:
                calls.append((lib.cap_config_set_store, (_bytes(store),)))
            if store_quota is not None:
                calls.append((lib.cap_config_set_store_quota, (int(store_quota),)))
            if session_ttl is not None:
                calls.append((lib.cap_config_set_session_ttl, (float(session_ttl),)))
            for name, value in (env or {}).items():
                calls.append((lib.cap_config_add_env, (_bytes(name), _bytes(value))))
            if output_directory is not None:
                calls.append((lib.cap_config_set_output_directory, (_bytes(output_directory),)))
            if docs is not None:
                calls.append((lib.cap_config_add_docs, (_bytes(docs),)))
            for name, url in (network or {}).items():
                calls.append((lib.cap_config_add_http_resource, (_bytes(name), _bytes(url))))
            for prefix in allow_urls:
                calls.append((lib.cap_config_allow_url, (_bytes(prefix),)))
            if http_timeout is not None or http_max_bytes is not None:
                calls.append((lib.cap_config_set_http_limits,
                              (float(http_timeout or 0), int(http_max_bytes or 0))))
            for mount in mounts:
                flags = _native.CAP_MOUNT_READ_ONLY if mount.read_only else 0
                calls.append((lib.cap_config_add_mount,
                              (_bytes(mount.host), _bytes(mount.guest), flags, mount.quota_bytes)))
            for directory in wheel_directories:
                calls.append((lib.cap_config_add_wheel_directory, (_bytes(directory),)))
            for url in index_urls:
                calls.append((lib.cap_config_add_index_url, (_bytes(url),)))
            for directory in site_packages:
                calls.append((lib.cap_config_add_site_packages, (_bytes(directory),)))
            if package_cache is not None:
                calls.append((lib.cap_config_set_package_cache, (_bytes(package_cache),)))
            if start_cache is not None:
                calls.append((lib.cap_config_set_start_cache, (_bytes(start_cache),)))
            for function, arguments in calls:
                _check(function(config, *arguments, error), error, function.__name__)
            handle = ctypes.c_void_p()
            _check(lib.cap_sandbox_new(config, ctypes.byref(handle), error), error, "cap_sandbox_new")
            self._handle = handle.value
        except BaseException:
            lib.cap_config_free(config)
            raise
        # The sandbox refers to its config: freed after it, in close().
        self._config: Optional[int] = config

    # --- lifetime ---

    def close(self) -> None:
        """Stops the zygote and its workers (and every session)."""
        with self._run_lock:
            self._free()

    def _free(self) -> None:
        if getattr(self, "_handle", None):
            self._lib.cap_sandbox_free(self._handle)
            self._handle = None
        if getattr(self, "_config", None):
            self._lib.cap_config_free(self._config)
            self._config = None

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if hasattr(self, "_lib"):
            self._free()

    # --- runs ---

    def run(
        self,
        code: Union[str, bytes],
        *,
        files: Optional[Mapping[str, Union[str, bytes]]] = None,
        session: Optional[str] = None,
        timeout: Optional[float] = None,
        cpu_time: Optional[float] = None,
        memory: Optional[int] = None,
        max_output: Optional[int] = None,
        disk: Optional[int] = None,
        max_files: Optional[int] = None,
        globals: Optional[Mapping[str, Any]] = None,
        return_json: bool = False,
        filename: str = "main.py",
        on_output: Optional[OutputHandler] = None,
        on_progress: Optional[ProgressHandler] = None,
        idempotency_key: Optional[str] = None,
    ) -> Result:
        """Runs `code` as the program `filename` and returns its Result.

        files: {path: content} placed in the scratch file system (relative
        paths under the working directory /work);  session: a session's id
        (any string: created on first use, kept between runs);  timeout,
        cpu_time (seconds), memory, max_output, disk (bytes), max_files (files
        and directories in the scratch file system): limits of this run (None:
        the defaults, 30 s, 512 MiB, 16 MiB, 256 MiB, 10,000);  globals:
        JSON-serialisable names bound before the code runs;  return_json:
        return_value as mcp-run-python gives it (a str as is, else JSON);
        on_output(stream, data): each chunk of output as it is written;
        on_progress(message): news while packages are installed;
        idempotency_key: with a store and a session, a retry with the same
        key and code returns the stored result instead of running again.

        Guest failures (exceptions, limits) are results; API failures raise
        CapsuleError.
        """
        return self._run(code, _Ticket(), files=files, session=session, timeout=timeout,
                         cpu_time=cpu_time, memory=memory, max_output=max_output, disk=disk,
                         max_files=max_files, globals=globals, return_json=return_json, filename=filename,
                         on_output=on_output, on_progress=on_progress,
                         idempotency_key=idempotency_key)

    async def run_async(self, code: Union[str, bytes], **options: Any) -> Result:
        """run() in a worker thread: the event loop keeps running.  Cancelling
        the awaiting task kills the run's worker (status "cancelled")."""
        ticket = _Ticket()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, lambda: self._run(code, ticket, **options))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            self._cancel(ticket)
            try:
                await future
            except Exception:  # the run's own outcome no longer matters
                pass
            raise

    def cancel(self) -> None:
        """Stops the run in progress, if any (from any thread)."""
        with self._state_lock:
            if self._current is not None and self._handle:
                self._current.cancelled = True
                self._lib.cap_sandbox_cancel(self._handle)

    def _cancel(self, ticket: _Ticket) -> None:
        with self._state_lock:
            ticket.cancelled = True
            if self._current is ticket and self._handle:
                self._lib.cap_sandbox_cancel(self._handle)

    def _run(self, code: Union[str, bytes], ticket: _Ticket, *,
             files: Optional[Mapping[str, Union[str, bytes]]] = None,
             session: Optional[str] = None, timeout: Optional[float] = None,
             cpu_time: Optional[float] = None, memory: Optional[int] = None,
             max_output: Optional[int] = None, disk: Optional[int] = None,
             max_files: Optional[int] = None,
             globals: Optional[Mapping[str, Any]] = None, return_json: bool = False,
             filename: str = "main.py", on_output: Optional[OutputHandler] = None,
             on_progress: Optional[ProgressHandler] = None,
             idempotency_key: Optional[str] = None) -> Result:
        source = _bytes(code)
        options = _native.RunOptions()
        options.filename = _bytes(filename)
        options.capture = 1
        options.return_json = 1 if return_json else 0
        options.limits.wall_seconds = float(timeout or 0)
        options.limits.cpu_seconds = float(cpu_time or 0)
        options.limits.memory_bytes = int(memory or 0)
        options.limits.output_bytes = int(max_output or 0)
        options.limits.disk_bytes = int(disk or 0)
        options.limits.disk_entries = int(max_files or 0)
        keep_alive: List[Any] = []  # buffers the C side points into during the run
        if files:
            array = (_native.File * len(files))()
            for slot, (path, content) in zip(array, files.items()):
                data = ctypes.create_string_buffer(_bytes(content), len(_bytes(content)))
                keep_alive.append(data)
                slot.path = _bytes(path)
                slot.data = ctypes.cast(data, ctypes.c_void_p)
                slot.size = len(_bytes(content))
            options.files = array
            options.file_count = len(files)
            keep_alive.append(array)
        if session is not None:
            options.session = _bytes(session)
        if idempotency_key is not None:
            options.idempotency_key = _bytes(idempotency_key)
        if globals is not None:
            options.globals_json = json.dumps(dict(globals)).encode()
        # A callback's exception cannot cross C: it is kept and raised after.
        callback_errors: List[BaseException] = []
        if on_output is not None:
            output_handler: OutputHandler = on_output

            def output(_userdata: Any, stream: int, data: int, size: int) -> None:
                try:
                    name = "stderr" if stream == _native.CAP_STDERR else "stdout"
                    output_handler(name, ctypes.string_at(data, size))
                except BaseException as exc:  # noqa: B902
                    callback_errors.append(exc)
            options.on_output = _native.OUTPUT_FUNCTION(output)
            keep_alive.append(options.on_output)
        if on_progress is not None:
            progress_handler: ProgressHandler = on_progress

            def progress(_userdata: Any, message: bytes) -> None:
                try:
                    progress_handler(message.decode("utf-8", "replace"))
                except BaseException as exc:  # noqa: B902
                    callback_errors.append(exc)
            options.on_progress = _native.PROGRESS_FUNCTION(progress)
            keep_alive.append(options.on_progress)

        error = _error_buffer()
        handle = ctypes.c_void_p()
        with self._run_lock:
            if not self._handle:
                raise InvalidArgumentError(_native.CAP_EINVAL, "capsule: the sandbox is closed")
            with self._state_lock:
                if ticket.cancelled:
                    raise asyncio.CancelledError()
                self._current = ticket
            try:
                code_status = self._lib.cap_sandbox_run(self._handle, source, len(source),
                                                        ctypes.byref(options), ctypes.byref(handle),
                                                        error)
            finally:
                with self._state_lock:
                    self._current = None
        _check(code_status, error, "cap_sandbox_run")
        result_handle = handle.value
        assert result_handle, "cap_sandbox_run returned CAP_OK without a result"
        try:
            result = _read_result(self._lib, result_handle)
        finally:
            self._lib.cap_result_free(result_handle)
        if callback_errors:
            raise callback_errors[0]
        return result

    # --- sessions ---

    def session(self, name: Optional[str] = None) -> "Session":
        """A session: runs that share one interpreter (variables, imports,
        files).  Closed on exit from a `with` block."""
        return Session(self, name or uuid.uuid4().hex)

    def close_session(self, name: str) -> None:
        """Ends a session and its worker; InvalidArgumentError if there is none."""
        error = _error_buffer()
        with self._run_lock:
            if not self._handle:
                raise InvalidArgumentError(_native.CAP_EINVAL, "capsule: the sandbox is closed")
            _check(self._lib.cap_session_close(self._handle, _bytes(name), error), error,
                   "cap_session_close")


class Session:
    """Runs in one interpreter kept alive between them (see Sandbox.session)."""

    def __init__(self, sandbox: Sandbox, name: str) -> None:
        self.sandbox = sandbox
        self.name = name

    def run(self, code: Union[str, bytes], **options: Any) -> Result:
        return self.sandbox.run(code, session=self.name, **options)

    async def run_async(self, code: Union[str, bytes], **options: Any) -> Result:
        return await self.sandbox.run_async(code, session=self.name, **options)

    def close(self) -> None:
        try:
            self.sandbox.close_session(self.name)
        except InvalidArgumentError:
            pass  # never used, or already evicted

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
