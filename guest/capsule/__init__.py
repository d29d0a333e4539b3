"""capsule: what the sandbox grants this program beyond files.

capsule.functions  the host functions granted to this run, as plain Python
                   functions (``from capsule.functions import lookup_order``).
capsule.tools      the tools of MCP servers (code mode): ``search(query)``; each
                   tool is ``from servers.<server> import <tool>``.
capsule.help       ``help("how do I read an xlsx file")``: the best sections of
                   /docs, the recipes capsule ships, the granted functions
                   and tools, Python's own documentation and the installed
                   packages' descriptions, searched by the host.
capsule.describe   ``describe("/output/chart.png", "what does it show?")``: a
                   model's answer about a file, when the host has a model
                   endpoint (else PermissionError).

Inside a durable job (MCP submit_job, ``capsule job submit``):
capsule.step       ``step("fetch", fn, *args, **kwargs)``: fn's result (JSON-able),
                   cached in the store; a rerun of the job returns it without
                   calling fn again.
capsule.sleep      ``sleep(seconds)`` / ``sleep_until(unix_time)``: the job parks
                   and any node resumes it when it is due (from the top, its
                   steps cached).
capsule.await_event ``await_event(name, timeout=None)``: the payload of the event
                   `name` (MCP emit_event); the job parks until it comes, or
                   TimeoutError once `timeout` seconds have passed.
Outside a job these raise RuntimeError; a cancelled job's next call raises
capsule.Cancelled.
"""

__all__ = ["Cancelled", "await_event", "describe", "help", "sleep", "sleep_until", "step"]

from capsule.functions import Cancelled

# Names used so far in this run, for a name used twice (a step in a loop):
# the second is "name#2".  Each attempt runs from the top, so the same code
# gives the same names again.
_used = {}


def _unique(name):
    count = _used.get(name, 0) + 1
    _used[name] = count
    return name if count == 1 else f"{name}#{count}"


def _check_name(name, what):
    if not isinstance(name, str) or not name or len(name.encode()) > 100:
        raise TypeError(f"{what} takes a name: a string of 1 to 100 bytes")
    if name.startswith("$"):
        raise ValueError(f"{what}: names starting with '$' are capsule's own")


def step(name, fn, /, *args, **kwargs):
    """Runs ``fn(*args, **kwargs)`` once for this job, as step `name`: its
    result (JSON-able: dicts, lists, str, numbers, bool, None, bytes) is
    saved in the store before step() returns it, and a rerun of the job
    (after a crash, a retry, a sleep) returns the saved result without
    calling fn.  A tuple comes back as a list.  Raises TypeError for a
    result that is not JSON-able, RuntimeError outside a job,
    capsule.Cancelled when the job was cancelled."""
    from capsule import functions
    _check_name(name, "step")
    if not callable(fn):
        raise TypeError("step() takes a function to run")
    key = _unique(name)
    answer = functions._exchange({"op": "step", "name": key}, "step")
    if answer.get("cached"):
        return answer.get("value")
    value = fn(*args, **kwargs)
    try:
        functions._ENCODER.encode(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"step {name!r}: its result must be JSON-able ({e})") from None
    answer = functions._exchange({"op": "step_done", "name": key, "value": value}, "step")
    return answer.get("value")


def sleep_until(when):
    """Parks the job until `when` (seconds since the epoch, as time.time()).
    The first attempt's time is kept: a rerun of the job goes on from here
    once it has passed, on whichever node runs it then."""
    from capsule import functions
    if isinstance(when, bool) or not isinstance(when, (int, float)) or when != when:
        raise TypeError("sleep_until() takes a time in seconds since the epoch")
    functions._exchange({"op": "sleep", "name": _unique("$sleep"), "until": float(when)}, "sleep")


def sleep(seconds):
    """Parks the job for `seconds` (see sleep_until)."""
    import time
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise TypeError("sleep() takes a number of seconds >= 0")
    sleep_until(time.time() + seconds)


def await_event(name, timeout=None):
    """The payload of event `name`, emitted for this job's owner (MCP
    emit_event, ``capsule job emit``) since the job was submitted.  Until it
    comes the job parks (no worker held); TimeoutError once `timeout`
    seconds (from the first wait) have passed.  The answer is kept: a rerun
    gets the same one."""
    from capsule import functions
    if not isinstance(name, str) or not name or len(name.encode()) > 100:
        raise TypeError("await_event() takes an event name: a string of 1 to 100 bytes")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not timeout >= 0):
        raise TypeError("await_event() takes a timeout in seconds, or None")
    answer = functions._exchange({"op": "await_event", "name": name,
                                  "key": _unique("$event:" + name), "timeout": timeout},
                                 "await_event")
    return answer.get("payload") if isinstance(answer, dict) else None


def help(query, limit=5):
    """The documentation that best answers `query` (a question in words),
    best first: a list of dicts with title, path (a /docs file, a recipe,
    capsule.functions.NAME, a /servers stub, pydoc:topics/NAME, a module's
    name, builtins.NAME or an installed distribution's METADATA), section,
    kind ("doc", "recipe", "function", "tool", "python-doc", "package"),
    snippet (the matching words between **), text (the section, up to 4000
    bytes) and score.  The host searches (SQLite FTS5); the same search as
    the MCP tool `help`."""
    from capsule import functions
    if not isinstance(query, str):
        raise TypeError("help() takes the question as a string")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 20:
        raise ValueError("help() takes a limit of 1 to 20")
    answer = functions._exchange({"op": "help", "query": query, "limit": limit}, "help")
    return answer.get("results", []) if isinstance(answer, dict) else []


# What a model is sent of an image at most (the host checks it again:
# src/help/describe.h); a larger image is made smaller here, by Pillow.
_IMAGE_SIDE = 1568
_IMAGE_BYTES = 5 << 20
_FILE_BYTES = 8 << 20
_SOURCE_BYTES = 64 << 20      # an image larger than this is not opened
_SOURCE_PIXELS = 40_000_000   # nor one with more pixels (memory)


def _is_image(head):
    return (head[:8] == b"\x89PNG\r\n\x1a\n" or head[:3] == b"\xff\xd8\xff"
            or head[:6] in (b"GIF87a", b"GIF89a") or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"))


def _within_caps(data):
    """An image's bytes within the caps: as they are when they fit, or when
    Pillow cannot open them (it has no JPEG or WebP codec here: the host
    then refuses an image too large, saying so); else a thumbnail, as PNG,
    smaller again while the PNG is over the byte cap."""
    import io
    try:
        from PIL import Image
        picture = Image.open(io.BytesIO(data))
        width, height = picture.size
    except Exception:
        return data
    with picture:
        if max(width, height) <= _IMAGE_SIDE and len(data) <= _IMAGE_BYTES:
            return data
        if width * height > _SOURCE_PIXELS:
            raise TypeError(f"describe: the image is {width}x{height} px, too large to make smaller")
        try:
            alpha = picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info
            small = picture.convert("RGBA" if alpha else "RGB")
            small.thumbnail((_IMAGE_SIDE, _IMAGE_SIDE))
            out = io.BytesIO()
            small.save(out, "PNG")
            while out.tell() > _IMAGE_BYTES and max(small.size) > 64:
                small.thumbnail((max(small.size) * 3 // 4,) * 2)
                out = io.BytesIO()
                small.save(out, "PNG")
        except Exception as error:
            raise TypeError(f"describe: cannot make the image smaller "
                            f"({type(error).__name__}: {error})") from None
    return out.getvalue()


def describe(file, question):
    """Asks a model `question` about `file` (a path, or bytes), and returns
    its answer as text: for images the code made (PNG, JPEG, GIF, WebP),
    PDF files and UTF-8 text, at most 8 MiB.  An image over 1568 px a side
    or 5 MiB is first made smaller here (Pillow: a PNG thumbnail).  The host
    sends it to the model endpoint it was configured with, or else to the
    MCP client's own model (sampling) when the client offers one;
    PermissionError when there is neither, TypeError for a file it cannot
    send (too large, another media type), TimeoutError,
    capsule.functions.ToolError when the model fails or declines."""
    from capsule import functions
    if not isinstance(question, str) or not question.strip():
        raise TypeError("describe() takes the question as a non-empty string")
    if isinstance(file, (bytes, bytearray, memoryview)):
        data, name = bytes(file), "file"
    else:
        import os
        name = os.fspath(file)
        with open(name, "rb") as f:
            head = f.read(16)
        limit = _SOURCE_BYTES if _is_image(head) else _FILE_BYTES
        if os.path.getsize(name) > limit:
            raise TypeError(f"describe: {name} is larger than {limit >> 20} MiB")
        with open(name, "rb") as f:
            data = f.read()
    if _is_image(data[:16]) and len(data) <= _SOURCE_BYTES:
        data = _within_caps(data)
    answer = functions._exchange({"op": "describe", "data": data, "name": str(name),
                                  "question": question}, "describe")
    return answer.get("answer", "") if isinstance(answer, dict) else ""
