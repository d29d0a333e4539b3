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
"""

__all__ = ["describe", "help"]


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
