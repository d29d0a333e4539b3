"""capsule's guest-side runner: runs one request inside the sandbox.

The host starts the interpreter as `python -I -u -c "import _capsule_runner;
_capsule_runner.init(FD, READ_ONLY)"` through the guest's capsule_init
export (guest/capsule_entry.c), then calls serve_one() through capsule_call
once per request.  FD is the control channel the host gives us:

- reading it yields the request: one line of JSON options, then the code
  as raw bytes (any bytes: decoding is the compiler's job, so invalid UTF-8
  is a SyntaxError like anywhere else), then end of file;
- after the run we write one JSON object to it: status, return_value,
  error, exit_code, and the uncaught exception's type and errno;
- then serve_one returns: nothing of the run is left on the stack, and the
  host sends the result and, in a session, calls again for the next request.

When the request says `dependencies`, the program's imports and PEP 723
block are read first and asked of the host through fd 5 (see
_prepare_dependencies); the host installs them and mounts site-packages.

init runs in the zygote, which then forks workers: everything imported
before it returns is shared, copy-on-write, by every run.  Nothing here is
trusted by the host: it parses the result defensively.
"""
import ast
import builtins
import errno
import importlib
import importlib.machinery
import json
import linecache
import os
import sys
import time
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
import tomllib  # noqa: E402  (PEP 723 blocks; 5 ms to import in every worker otherwise)

_TOP_LEVEL_AWAIT = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
_DEPENDENCIES_FD = 5
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


# --- dependencies -------------------------------------------------------------

# PEP 723's reference expression for `# /// TYPE` ... `# ///` blocks.
_METADATA_BLOCK = re.compile(
    r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")
_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
# What a session has asked for so far: each request repeats it all, so the
# host can build one environment holding everything.
_wanted = {"requirements": [], "imports": [], "optional": [], "requires_python": None}
_last_request = None
_environment_path = None
_finder_active = False
_finder_tried = set()


def _script_metadata(text):
    """PEP 723: the `script` block's dependencies and requires-python, or
    None without a block.  Raises ValueError when the block is malformed."""
    blocks = [m for m in _METADATA_BLOCK.finditer(text) if m.group("type") == "script"]
    if not blocks:
        return None
    if len(blocks) > 1:
        raise ValueError("more than one '# /// script' block")
    content = "".join(line[2:] if line.startswith("# ") else line[1:]
                      for line in blocks[0].group("content").splitlines(keepends=True))
    try:
        data = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"invalid TOML: {exc}") from None
    dependencies = data.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise ValueError("'dependencies' must be a list of strings")
    requires_python = data.get("requires-python")
    if requires_python is not None and not isinstance(requires_python, str):
        raise ValueError("'requires-python' must be a string")
    return dependencies, requires_python


def _catches_import_error(handler):
    if handler.type is None:
        return True
    types_ = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any((isinstance(t, ast.Name) and t.id in _IMPORT_ERRORS) or
               (isinstance(t, ast.Attribute) and t.attr in _IMPORT_ERRORS) for t in types_)


def _imports(tree):
    """Top-level names imported anywhere in the tree (functions, classes,
    branches included): (required, optional), where optional ones appear only
    inside a `try` that catches ImportError."""
    required, optional = set(), set()
    stack = [(tree, False)]
    while stack:
        node, guarded = stack.pop()
        names = ()
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            (optional if guarded else required).add(name.partition(".")[0])
        if isinstance(node, (ast.Try, ast.TryStar)):
            inner = guarded or any(_catches_import_error(h) for h in node.handlers)
            stack.extend((child, inner) for child in node.body)
            stack.extend((child, guarded) for child in node.handlers + node.orelse + node.finalbody)
        else:
            stack.extend((child, guarded) for child in ast.iter_child_nodes(node))
    return required, optional - required


def _missing(name):
    """Not in the standard library and not importable already."""
    if name in sys.stdlib_module_names or name in sys.builtin_module_names or name == "__main__":
        return False
    if os.path.exists(name + ".py") or os.path.isdir(name):
        return False  # the program's own module, in the working directory
    try:
        return importlib.machinery.PathFinder.find_spec(name) is None
    except Exception:
        return True


def _ask_host(request):
    data = json.dumps(request).encode()
    while data:
        data = data[os.write(_DEPENDENCIES_FD, data):]
    answer = _read_all(_DEPENDENCIES_FD)
    return json.loads(answer)


def _request_environment():
    """Asks the host for everything wanted so far; an error text or None."""
    global _last_request, _environment_path
    request = {key: (sorted(value) if isinstance(value, list) else value)
               for key, value in _wanted.items()}
    if request == _last_request:
        return None
    answer = _ask_host(request)
    if not answer.get("ok"):
        return answer.get("error") or "the packages could not be installed"
    _last_request = request
    path = answer.get("path")
    if path and path != _environment_path:
        if _environment_path in sys.path:
            sys.path.remove(_environment_path)
        sys.path.append(path)
        _environment_path = path
        importlib.invalidate_caches()
    return None


def _add_wanted(key, names):
    for name in names:
        if name not in _wanted[key]:
            _wanted[key].append(name)


def _prepare_dependencies(source, filename):
    """Installs what the program needs before it runs; the install error
    text, or None.  Code that does not compile is left to the compiler,
    which reports it as the run's error."""
    global _finder_active
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        script = _script_metadata(text)
    except ValueError as exc:
        return f"PEP 723 script metadata: {exc}"
    if script is not None:
        # Authoritative: the block lists everything, imports add nothing.
        requirements, requires_python = script
        _add_wanted("requirements", requirements)
        if requires_python:
            _wanted["requires_python"] = requires_python
        _finder_active = False
    else:
        try:
            tree = compile(source, filename, "exec", ast.PyCF_ONLY_AST | _TOP_LEVEL_AWAIT,
                           dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
        required, optional = _imports(tree)
        _add_wanted("imports", sorted(name for name in required if _missing(name)))
        _add_wanted("optional", sorted(name for name in optional if _missing(name)))
        _finder_active = True
    if not any(_wanted[key] for key in ("requirements", "imports", "optional", "requires_python")):
        return None
    if script is None:
        # Packages compiled in (guest/extensions) need no installing, but
        # when the host resolves anyway they are named too, so that the
        # result's `dependencies` lists them with their versions.
        _add_wanted("imports", sorted((required | optional) & _BUILTIN_PACKAGES))
    return _request_environment()


class _InstallingFinder:
    """Last on sys.meta_path: a top-level import nothing else found (an
    import the scan could not see, or one a package makes) is asked of the
    host once, as an optional dependency."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if (path is not None or not _finder_active or name in _finder_tried
                or name in sys.stdlib_module_names):
            return None
        _finder_tried.add(name)
        before = _environment_path
        _add_wanted("optional", [name])
        try:
            if _request_environment() is not None or _environment_path == before:
                return None
        except Exception:
            return None
        return importlib.machinery.PathFinder.find_spec(name)


class _BuiltinSubmoduleFinder:
    """First on sys.meta_path: submodules compiled into the interpreter
    (lxml.etree, PIL._imaging: guest/extensions).  They are in the
    built-in module table under their dotted names, but the built-in
    importer only answers top-level imports (it returns None whenever a
    parent package's path is given), so this one answers for them."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if path is None or name not in _BUILTIN_SUBMODULES:
            return None
        return importlib.machinery.ModuleSpec(name, importlib.machinery.BuiltinImporter,
                                              origin="built-in")


# Import names of the distributions compiled in (src/deps/deps.c knows them
# as built in: BUILTIN_DISTRIBUTIONS).
_BUILTIN_PACKAGES = frozenset({"PIL", "lxml"})
_BUILTIN_SUBMODULES = frozenset(name for name in sys.builtin_module_names if "." in name)


def _compile_environment(root, output):
    """Host-requested, before any program runs in this worker: compiles
    every module of a freshly installed environment to hash-checked .pyc
    (valid while the source is unchanged, whatever the mtimes) under
    `output`, whence the host adds them to the environment's image.  Only
    compile() runs here; nothing of the packages is executed."""
    import importlib.util
    from importlib._bootstrap_external import _code_to_hash_pyc
    compiled = 0
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            try:
                with open(path, "rb") as f:
                    source = f.read()
                code = compile(source, path, "exec", dont_inherit=True)
            except (SyntaxError, ValueError, OSError, RecursionError, MemoryError):
                continue  # the import will say what is wrong
            data = _code_to_hash_pyc(code, importlib.util.source_hash(source), True)
            target = os.path.join(output, os.path.relpath(importlib.util.cache_from_source(path), root))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
            compiled += 1
    return "success", str(compiled), None, 0, None, None


def _without_self_pipe(loop_class):
    """asyncio's selector loop wakes itself through a socketpair, which WASI
    does not have.  One thread and no signals means nothing else can wake
    it, so a loop without the self-pipe is complete here."""
    loop_class._make_self_pipe = lambda self: None
    loop_class._close_self_pipe = lambda self: None
    loop_class._write_to_self = lambda self: None


class _AsyncioPatcher:
    """First on sys.meta_path: when asyncio.selector_events is imported,
    its loop class loses the self-pipe, for every loop however it is made
    (asyncio.run, a policy reset to the default, SelectorEventLoop())."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "asyncio.selector_events":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _without_self_pipe(module.BaseSelectorEventLoop)

        spec.loader.exec_module = exec_module
        return spec


# --- what the sandbox does not grant: clear errors --------------------------------

def _granted_alternatives():
    """What the host did grant, as a sentence an agent can act on."""
    hints = []
    try:
        if os.path.isdir("/network"):
            names = sorted(os.listdir("/network"))
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            hints.append("the host fetches the resources it granted: read them as files under "
                         "/network/" + (f" ({shown})" if shown else ""))
    except OSError:
        pass
    return ("; " + "; ".join(hints)) if hints else ""


def _denied(what, error=PermissionError):
    """A callable that raises what a denied capability raises: the standard
    exception type (PermissionError, an OSError with errno EPERM) and a
    message saying it is the sandbox, not a bug of the program."""
    def denied(*args, **kwargs):
        message = f"{what} is not available in the capsule sandbox"
        if error is PermissionError:
            raise PermissionError(errno.EPERM, message + _granted_alternatives())
        raise error(message + _granted_alternatives())
    denied.__name__ = denied.__qualname__ = "denied"
    return denied


# Functions Linux's _socket has and WASI's lacks: calling them was an
# AttributeError on `_socket`, which says nothing to whoever reads it.
_SOCKET_FUNCTIONS = ("getaddrinfo", "getnameinfo", "gethostbyname", "gethostbyname_ex",
                     "gethostbyaddr", "getservbyname", "getservbyport", "getprotobyname",
                     "socketpair", "fromfd", "sethostname", "if_nameindex", "if_nametoindex",
                     "if_indextoname")


def _deny_capabilities():
    """Done once in the zygote: sockets, processes and threads fail with
    PermissionError or RuntimeError and a message naming the sandbox."""
    import socket
    import subprocess
    import _socket
    import _thread
    network = _denied("network access (sockets, DNS)")
    for name in _SOCKET_FUNCTIONS:
        if not hasattr(_socket, name):
            setattr(_socket, name, network)
            setattr(socket, name, network)
    for name in ("create_connection", "create_server"):
        setattr(socket, name, network)

    def socket_init(self, *args, **kwargs):
        network()
    socket.socket.__init__ = socket_init

    processes = _denied("running programs (subprocess, os.system)")

    def popen_init(self, *args, **kwargs):
        self._child_created = False  # what Popen.__del__ looks at
        processes()
    subprocess.Popen.__init__ = popen_init
    os.system = processes

    threads = _denied("starting a thread (WebAssembly here has one thread; use asyncio or "
                      "do the work in turn)", RuntimeError)
    _thread.start_new_thread = threads
    _thread.start_new = threads
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._start_new_thread = threads


_read_only_mounts = ()
_access = os.access


def _access_knowing_mounts(path, mode, *, dir_fd=None, effective_ids=False,
                           follow_symlinks=True):
    """os.access, except that W_OK is False on a read-only mount.  WASI has
    no permission bits: wasi-libc answers from the rights of the directory
    descriptor, which is the sandbox's one root for every path."""
    allowed = _access(path, mode, dir_fd=dir_fd, effective_ids=effective_ids,
                      follow_symlinks=follow_symlinks)
    if allowed and mode & os.W_OK and dir_fd is None and not isinstance(path, int):
        target = os.path.abspath(os.fsdecode(path))
        for mount in _read_only_mounts:
            if target == mount or target.startswith(mount.rstrip("/") + "/"):
                return False
    return allowed


# WASI has no permission bits: wasi-libc's stat gives every file mode 000,
# which zipfile and tarfile would write into archives (unreadable once
# extracted elsewhere), and os.chmod changed nothing anyone could see.  So
# os.stat reports the usual 644/755, and os.chmod's bits for the paths it
# was given (remembered for the life of the interpreter, like the files of a
# session).  importlib keeps posix.stat itself.
_modes = {}
_stat, _lstat, _chmod, _mkdir = os.stat, os.lstat, os.chmod, os.mkdir
_UMASK = 0o022


def _with_mode(result, path):
    kind = result.st_mode & 0o170000
    bits = _modes.get(path)
    if bits is None:
        bits = 0o755 if kind == 0o040000 else 0o644
    values, extra = result.__reduce__()[1]
    return os.stat_result((kind | bits,) + tuple(values)[1:], extra)


def _key(path, dir_fd):
    if isinstance(path, int) or dir_fd is not None:
        return None
    return os.path.abspath(os.fsdecode(path))


def _stat_with_mode(path, *, dir_fd=None, follow_symlinks=True):
    return _with_mode(_stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks),
                      _key(path, dir_fd))


def _lstat_with_mode(path, *, dir_fd=None):
    return _with_mode(_lstat(path, dir_fd=dir_fd), _key(path, dir_fd))


def _chmod_remembered(path, mode, *, dir_fd=None, follow_symlinks=True):
    _chmod(path, mode, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
    key = _key(path, dir_fd)
    if key is not None:
        _modes[key] = mode & 0o7777


_utime = os.utime


def _utime_now_explicit(path, times=None, *, ns=None, dir_fd=None, follow_symlinks=True):
    """os.utime: "now" (no times given) reaches WASI as the time 0 through
    this wasi-libc and CPython, so the current time is passed explicitly."""
    if times is None and ns is None:
        now = time.time_ns()
        return _utime(path, ns=(now, now), dir_fd=dir_fd, follow_symlinks=follow_symlinks)
    if ns is None:
        return _utime(path, times, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
    return _utime(path, times, ns=ns, dir_fd=dir_fd, follow_symlinks=follow_symlinks)


def _mkdir_remembered(path, mode=0o777, *, dir_fd=None):
    _mkdir(path, mode, dir_fd=dir_fd)
    key = _key(path, dir_fd)
    if key is not None:
        _modes[key] = mode & 0o7777 & ~_UMASK


def _explain(exc):
    """Adds a note to an uncaught OSError about a path the sandbox does not
    have or may not write, naming what it does have."""
    if not isinstance(exc, OSError) or not isinstance(exc.filename, str):
        return
    if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS):
        return
    path = os.path.abspath(exc.filename)
    top = path.split("/")[1] if path.count("/") >= 1 else ""
    try:
        roots = sorted(n for n in os.listdir("/") if n not in ("usr",))
    except OSError:
        roots = []
    if exc.errno == errno.EROFS:
        exc.add_note(f"capsule: {path} is on a read-only mount of the sandbox; write under "
                     f"/work, /tmp or a mount granted read-write")
    elif exc.errno == errno.ENOENT and top and top not in roots:
        listed = ", ".join("/" + n for n in roots)
        exc.add_note(f"capsule: host files are not visible in the sandbox; it has only "
                     f"{listed}{_granted_alternatives()}")


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
            lines = text.splitlines(True)
            # traceback places its carets assuming every line ends with a
            # newline, as lines read from a file do; code from -c, stdin
            # or MCP often lacks the last one.
            if lines and not lines[-1].endswith(("\n", "\r")):
                lines[-1] += "\n"
            linecache.cache[filename] = (len(text), None, lines, filename)
        except UnicodeDecodeError:
            pass
        if options.get("dependencies"):
            failure = _prepare_dependencies(source, filename)
            if failure is not None:
                return "install-error", None, failure, 1, None, None
        body, tail = _compile(source, filename)
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
        _explain(exc)
        exception = type(exc).__name__
        errno = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
        try:
            error = _format_exception(exc, filename)
        except MemoryError:
            error = f"{exception} (no memory left to format the traceback)"
        if options.get("traceback_to_stderr"):
            sys.stderr.write(error)
    return status, value, error, exit_code, exception, errno


_channel = None
_first_request = True


def init(channel, read_only=()):
    """Sets the runner up, once, before any request: `channel` is the
    control channel; `read_only`, the guest paths the zygote mounted
    read-only (os.access reports them)."""
    global _channel, _read_only_mounts
    _channel = channel
    _read_only_mounts = tuple(os.fsdecode(mount) for mount in read_only)
    # CPython's WASI port defaults to 600; the guest's 8 MiB stack holds
    # native Python's 1000, and beyond the limit is a RecursionError.
    sys.setrecursionlimit(1000)
    _deny_capabilities()
    for name, wrapper in (("access", _access_knowing_mounts), ("stat", _stat_with_mode),
                          ("lstat", _lstat_with_mode), ("chmod", _chmod_remembered),
                          ("utime", _utime_now_explicit), ("mkdir", _mkdir_remembered)):
        original = getattr(os, name)
        setattr(os, name, wrapper)
        # Code asks these sets whether a function takes fd / dir_fd / ...
        for support in (os.supports_fd, os.supports_dir_fd, os.supports_follow_symlinks,
                        os.supports_effective_ids):
            if original in support:
                support.add(wrapper)
    sys.meta_path.insert(0, _AsyncioPatcher)
    sys.meta_path.insert(1, _BuiltinSubmoduleFinder)
    sys.meta_path.append(_InstallingFinder)
    # Code mode: the host's stubs, /servers/<server>/<tool>.py, are the
    # package `servers` (last on the path: nothing else is shadowed).
    if os.path.isfile("/servers/__init__.py"):
        sys.path.append("/")


def serve_one():
    """Reads one request from the channel, runs it and writes its result.
    False when there was no request (the channel is at its end)."""
    global _first_request
    channel = _channel
    request = _read_all(channel)
    if not request:
        return False
    if _first_request:
        _refresh_after_fork()
        _first_request = False
    header, _, source = request.partition(b"\n")
    options = json.loads(header)
    filename = options.get("filename", "main.py")
    os.chdir(options.get("cwd", "/"))

    if options.get("compile_environment"):
        status, value, error, exit_code, exception, errno = _compile_environment(
            options["compile_environment"], options["output"])
    else:
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
    return True


def main(channel, read_only=()):
    """The same as a loop (for `python -c` through _start): serves
    requests from `channel` until it ends."""
    init(channel, read_only)
    while serve_one():
        pass
