"""Host functions granted to this run, as plain Python functions.

    from capsule.functions import lookup_order
    order = lookup_order(order_id=42)

Each function runs in the host, not here: the call is written to the call
device (/dev/capsule-functions, descriptor 6), the host checks and runs it
and the answer comes back; this program waits meanwhile.  Arguments are
keyword-only and JSON-able (bytes cross as bytes); the signature and the
docstring come from the function's JSON Schema, as text: nothing the host
describes is ever executed.

Errors: PermissionError (not granted, approval refused, a limit of the run
reached), TimeoutError, TypeError (arguments the schema refuses), and
ToolError (the function itself failed; its message).  A large result comes
back through a file of the scratch file system and is read transparently;
if it cannot be loaded, ResultTooLarge (a MemoryError) says where it is.

describe() lists what is granted; call(name, **arguments) calls by name.
"""
import base64
import json
import keyword
import os

_DEVICE = 6
_ESCAPES = {c: None for c in range(32) if c not in (9, 10)}
_TYPES = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list,
          "object": dict, "null": None}


class ToolError(Exception):
    """The host function failed; the message is the function's own."""


class Cancelled(BaseException):
    """The job this code runs in was cancelled (capsule.step, sleep and
    await_event raise it).  A BaseException, so that `except Exception`
    does not swallow it: the attempt ends and the job is `cancelled`."""


class ResultTooLarge(MemoryError):
    """The result reached the sandbox but could not be loaded: it is kept,
    as JSON, in the file `path`."""

    def __init__(self, message, path):
        super().__init__(message)
        self.path = path


_ERRORS = {"not-granted": PermissionError, "denied": PermissionError, "limit": PermissionError,
           "invalid-arguments": TypeError, "timeout": TimeoutError, "error": ToolError,
           "malformed": RuntimeError, "not-in-job": RuntimeError, "cancelled": Cancelled}


def _bytes_as_json(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json_as_bytes(item):
    if len(item) == 1 and isinstance(item.get("$bytes"), str):
        return base64.b64decode(item["$bytes"])
    return item


# Made once: json.dumps and json.loads with options build a new encoder or
# decoder on every call, which would be most of a small call's cost.
_ENCODER = json.JSONEncoder(default=_bytes_as_json, allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder(object_hook=_json_as_bytes)
_READ = 1 << 16


def _exchange(request, what):
    """One request through the call device: the answer's body, read back
    from its file when the worker spilled it there (`what` names it in
    errors)."""
    data = _ENCODER.encode(request).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(_DEVICE, view):]
    # The device hands out what is left of the answer, up to the size asked
    # for: a short read is its end.
    answer = os.read(_DEVICE, _READ)
    if len(answer) == _READ:
        chunks = [answer]
        while True:
            chunk = os.read(_DEVICE, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        answer = b"".join(chunks)
    head, _, body = answer.partition(b"\n")
    header = json.loads(head)
    if not header.get("ok"):
        error = _ERRORS.get(header.get("error"), ToolError)
        raise error(str(header.get("message") or "the call failed"))
    path = header.get("spilled")
    if not path:
        return _decode(body, what)
    try:
        with open(path, "rb") as spilled:
            value = _decode(spilled.read(), what)
    except MemoryError:
        raise ResultTooLarge(f"the result of {what} ({header.get('size')} bytes) is too large "
                             f"to load here; it is kept in {path}", path) from None
    os.remove(path)
    return value


def _decode(data, what):
    try:
        return _DECODER.decode(data.decode())
    except ValueError:  # UnicodeDecodeError included
        raise ToolError(f"{what} returned something that is not JSON") from None


def call(name, /, **arguments):
    """Calls the host function `name` with keyword `arguments`; its result."""
    return _exchange({"op": "call", "function": name, "arguments": arguments}, name)


_functions = None


def _clean(text):
    return str(text).translate(_ESCAPES) if text else ""


def _annotation(schema_type):
    """A Python annotation for a JSON Schema type (or list of types)."""
    names = schema_type if isinstance(schema_type, list) else [schema_type]
    found = []
    for name in names:
        if isinstance(name, str) and name in _TYPES:
            python = _TYPES[name]
            found.append(type(None) if python is None else python)
    if not found:
        return None
    annotation = found[0]
    for other in found[1:]:
        annotation = annotation | other
    return annotation


def _type_name(annotation):
    if annotation is None:
        return "any"
    return getattr(annotation, "__name__", None) or str(annotation)


def _build(entry):
    """A plain function for one catalog entry, or None for a name this
    module cannot offer.  Made with a closure, never with exec."""
    import inspect
    name = entry.get("name") if isinstance(entry, dict) else None
    if not (isinstance(name, str) and name.isascii() and name.isidentifier()
            and not keyword.iskeyword(name) and not name.startswith("_")):
        return None
    schema = entry.get("input_schema")
    schema = schema if isinstance(schema, dict) else {}
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = schema.get("required")
    required = {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
    parameters, lines, accepted = [], [], set()
    takes_any = not properties
    for key in sorted(properties, key=lambda k: k not in required):
        prop = properties[key] if isinstance(properties[key], dict) else {}
        if not (isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)):
            takes_any = True  # reachable only through **arguments
            continue
        annotation = _annotation(prop.get("type"))
        default = inspect.Parameter.empty if key in required else None
        kwargs = {"default": default}
        if annotation is not None:
            kwargs["annotation"] = annotation
        parameters.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, **kwargs))
        accepted.add(key)
        what = _clean(prop.get("description")).strip().replace("\n", "\n        ")
        lines.append(f"    {key} ({_type_name(annotation)}"
                     f"{', required' if key in required else ''}){': ' + what if what else ''}")
    if takes_any:
        parameters.append(inspect.Parameter("arguments", inspect.Parameter.VAR_KEYWORD))
    signature = inspect.Signature(parameters)
    missing = sorted(required & accepted)

    def function(**arguments):
        for key in missing:
            if key not in arguments:
                raise TypeError(f"{name}() missing required keyword argument: '{key}'")
        if not takes_any:
            for key in arguments:
                if key not in accepted:
                    raise TypeError(f"{name}() got an unexpected keyword argument '{key}'")
        sent = {k: v for k, v in arguments.items() if v is not None or k in required}
        return call(name, **sent)

    description = _clean(entry.get("description")).strip()
    doc = [f"{name}{signature}", ""]
    if description:
        doc += [description, ""]
    if lines:
        doc += ["Args:"] + lines + [""]
    doc.append("Runs in the host.  Raises PermissionError, TimeoutError, TypeError or "
               "capsule.functions.ToolError." +
               ("  Each call needs approval." if entry.get("needs_approval") else ""))
    function.__name__ = function.__qualname__ = name
    function.__module__ = __name__
    function.__doc__ = "\n".join(doc)
    function.__signature__ = signature
    function._summary = description.split("\n")[0]
    function.__annotations__ = {p.name: p.annotation for p in parameters
                                if p.annotation is not inspect.Parameter.empty}
    return function


def _granted():
    """The granted functions by name, asked of the host once per run."""
    global _functions
    if _functions is None:
        catalog = _exchange({"op": "list"}, "the list of functions")
        functions = {}
        for entry in catalog if isinstance(catalog, list) else []:
            function = _build(entry)
            if function is not None:
                functions[function.__name__] = function
        _functions = functions
    return _functions


def describe():
    """The granted functions, one signature and summary line each."""
    lines = []
    for name, function in sorted(_granted().items()):
        summary = function._summary
        lines.append(f"{name}{function.__signature__}" + (f"\n    {summary}" if summary else ""))
    return "\n".join(lines) if lines else "no host functions are granted to this sandbox"


def __getattr__(name):
    if name.startswith("_"):
        if name == "__all__":
            return sorted(_granted())
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    functions = _granted()
    if name in functions:
        return functions[name]
    granted = ", ".join(sorted(functions)) or "none"
    raise PermissionError(f"host function '{name}' is not granted to this sandbox "
                          f"(granted: {granted})")


def __dir__():
    return sorted(set(globals()) | set(_granted()))
