"""capsule: what the sandbox grants this program beyond files.

capsule.functions  the host functions granted to this run, as plain Python
                   functions (``from capsule.functions import lookup_order``).
capsule.tools      the tools of MCP servers (code mode): ``search(query)``; each
                   tool is ``from servers.<server> import <tool>``.
capsule.help       ``help("how do I read an xlsx file")``: the best sections of
                   /docs, the recipes capsule ships and the granted functions
                   and tools, searched by the host.
capsule.describe   ``describe("/output/chart.png", "what does it show?")``: a
                   model's answer about a file, when the host has a model
                   endpoint (else PermissionError).
"""

__all__ = ["describe", "help"]


def help(query, limit=5):
    """The documentation that best answers `query` (a question in words),
    best first: a list of dicts with title, path (a /docs file, a recipe,
    capsule.functions.NAME or a /servers stub), section, kind ("doc",
    "recipe", "function", "tool"), snippet (the matching words between
    **), text (the section, up to 4000 bytes) and score.  The host searches
    (SQLite FTS5); the same search as the MCP tool `help`."""
    from capsule import functions
    if not isinstance(query, str):
        raise TypeError("help() takes the question as a string")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 20:
        raise ValueError("help() takes a limit of 1 to 20")
    answer = functions._exchange({"op": "help", "query": query, "limit": limit}, "help")
    return answer.get("results", []) if isinstance(answer, dict) else []


def describe(file, question):
    """Asks a model `question` about `file` (a path, or bytes), and returns
    its answer as text: for images the code made (PNG, JPEG, GIF, WebP),
    PDF files and UTF-8 text, at most 8 MiB.  The host sends it to the
    model endpoint it was configured with, or else to the MCP client's own
    model (sampling) when the client offers one; PermissionError when there
    is neither, TypeError for a file it cannot send (too large, another
    media type), TimeoutError, capsule.functions.ToolError when the model
    fails or declines."""
    from capsule import functions
    if isinstance(file, (bytes, bytearray, memoryview)):
        data, name = bytes(file), "file"
    else:
        import os
        name = os.fspath(file)
        if os.path.getsize(name) > 8 << 20:
            raise TypeError(f"describe: {name} is larger than 8 MiB")
        with open(name, "rb") as f:
            data = f.read()
    if not isinstance(question, str) or not question.strip():
        raise TypeError("describe() takes the question as a non-empty string")
    answer = functions._exchange({"op": "describe", "data": data, "name": str(name),
                                  "question": question}, "describe")
    return answer.get("answer", "") if isinstance(answer, dict) else ""
