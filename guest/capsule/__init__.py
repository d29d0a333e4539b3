"""capsule: what the sandbox grants this program beyond files.

capsule.functions  the host functions granted to this run, as plain Python
                   functions (``from capsule.functions import lookup_order``).
capsule.tools      the tools of MCP servers (code mode): ``search(query)``; each
                   tool is ``from servers.<server> import <tool>``.
capsule.help       ``help("how do I read an xlsx file")``: the best sections of
                   /docs, the recipes capsule ships and the granted functions
                   and tools, searched by the host.
"""

__all__ = ["help"]


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
