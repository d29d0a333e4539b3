"""capsule's guest-side runner: runs one request inside the sandbox.

The host starts the interpreter as `python -I -c "import _capsule_runner;
_capsule_runner.main(FD)"`.  FD is the control channel the host gives us:

- reading it yields the request: one line of JSON options, then the code
  as raw bytes (any bytes: decoding is the compiler's job, so invalid UTF-8
  is a SyntaxError like anywhere else), then end of file;
- after the run we write one JSON object to it: status, return_value,
  error, exit_code, and the uncaught exception's type and errno;
- reading again asks for the next request (a session), or ends the worker.

The first read is where the zygote forks workers: everything imported
before it is shared, copy-on-write, by every run.  Nothing here is trusted
by the host: it parses the result defensively.
"""
import ast
import builtins
import json
import linecache
import os
import sys
import traceback
import types

# Warm-up: modules most programs use, imported once in the zygote.  More
# here means faster runs but more pages per fork; keep it to the common set.
import collections  # noqa: F401,E402
import datetime  # noqa: F401,E402
import functools  # noqa: F401,E402
import itertools  # noqa: F401,E402
import math  # noqa: F401,E402
import random  # noqa: E402
import re  # noqa: F401,E402

_TOP_LEVEL_AWAIT = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
_CO_COROUTINE = 0x80


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _format_exception(exc, filename):
    """Traceback text without the runner's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _compile(source, filename):
    """Compiles the program; the last expression statement, if any, is
    compiled separately so that its value can be reported."""
    tree = compile(source, filename, "exec", ast.PyCF_ONLY_AST | _TOP_LEVEL_AWAIT,
                   dont_inherit=True)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    body = compile(tree, filename, "exec", _TOP_LEVEL_AWAIT, dont_inherit=True)
    tail = compile(last, filename, "eval", _TOP_LEVEL_AWAIT, dont_inherit=True) if last else None
    return body, tail


def _install_event_loop_policy():
    """asyncio's selector loop wakes itself through a socketpair, which WASI
    does not have.  One thread and no signals means nothing else can wake
    it, so a loop without the self-pipe is complete here."""
    import asyncio

    class WasiEventLoop(asyncio.SelectorEventLoop):
        def _make_self_pipe(self):
            pass

        def _close_self_pipe(self):
            pass

        def _write_to_self(self):
            pass

    class WasiEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
        _loop_factory = WasiEventLoop

    asyncio.set_event_loop_policy(WasiEventLoopPolicy())


def _evaluate(code, namespace):
    result = eval(code, namespace)
    if code.co_flags & _CO_COROUTINE:
        import asyncio
        result = asyncio.run(result)
    return result


def _format_return_value(value):
    """As mcp-run-python reports it: a str as is, else JSON, else repr."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _refresh_after_fork():
    """Each worker is a copy of the zygote: without this, every run would
    draw the same random numbers.  (The str hash secret is also shared; it
    is fixed at interpreter start and cannot change under live dicts.)"""
    random.seed()
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile._name_sequence = None


_session_module = None


def _main_module(filename, session):
    global _session_module
    if session and _session_module is not None:
        return _session_module
    module = types.ModuleType("__main__")
    module.__file__ = filename
    module.__builtins__ = builtins
    if session:
        _session_module = module
    return module


def _run(source, filename, options):
    module = _main_module(filename, options.get("session"))
    sys.modules["__main__"] = module
    namespace = module.__dict__
    namespace.update(options.get("globals") or {})
    sys.argv = [filename]

    status, value, error, exit_code = "success", None, None, 0
    exception, errno = None, None
    try:
        try:
            text = source.decode("utf-8")
            linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        except UnicodeDecodeError:
            pass
        body, tail = _compile(source, filename)
        if b"asyncio" in source or (body.co_flags | (tail.co_flags if tail else 0)) & _CO_COROUTINE:
            _install_event_loop_policy()
        _evaluate(body, namespace)
        if tail is not None:
            result = _evaluate(tail, namespace)
            if result is not None:
                value = _format_return_value(result) if options.get("return_json") else repr(result)
    except SystemExit as exc:
        code = exc.code
        if code is None or code == 0:
            exit_code = 0
        elif isinstance(code, int):
            exit_code = code
        else:
            print(code, file=sys.stderr)
            exit_code = 1
        if exit_code != 0:
            status, error = "run-error", f"SystemExit: {exc.code}"
    except BaseException as exc:  # noqa: B902 - everything the code raises is a result
        status, exit_code = "run-error", 1
        exception = type(exc).__name__
        errno = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
        try:
            error = _format_exception(exc, filename)
        except MemoryError:
            error = f"{exception} (no memory left to format the traceback)"
        if options.get("traceback_to_stderr"):
            sys.stderr.write(error)
    return status, value, error, exit_code, exception, errno


def main(channel):
    # CPython's WASI port defaults to 600; the guest's 8 MiB stack holds
    # native Python's 1000, and beyond the limit is a RecursionError.
    sys.setrecursionlimit(1000)
    first = True
    while True:
        request = _read_all(channel)
        if not request:
            return
        if first:
            _refresh_after_fork()
            first = False
        header, _, source = request.partition(b"\n")
        options = json.loads(header)
        filename = options.get("filename", "main.py")
        os.chdir(options.get("cwd", "/"))

        status, value, error, exit_code, exception, errno = _run(source, filename, options)

        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        result = {"status": status, "return_value": value, "error": error,
                  "exit_code": exit_code, "exception": exception, "errno": errno}
        data = json.dumps(result).encode("ascii")
        while data:
            data = data[os.write(channel, data):]
