"""code_sandbox(): the helper mcp-run-python offers, on a capsule Sandbox.

    from capsule import code_sandbox          # was: from mcp_run_python import code_sandbox

    async with code_sandbox(dependencies=["markdown"]) as sandbox:
        result = await sandbox.eval("print(1)\\n6 * 7")
        # {"status": "success", "output": ["1"], "return_value": 42}

Same keywords and the same result dictionaries as mcp-run-python's
(status "success", "install-error" or "run-error"; output as a list of
lines; return_value or error).  The differences, by construction:
- there is no Deno, Pyodide or MCP subprocess: runs go straight to
  libcapsule, each in a fresh worker process (eval is not a session);
- dependencies are installed by the host, from the sources given
  (site_packages, wheel_directories, index_urls; PyPI's index when none is
  given), and only what the list names is installed (a PEP 723 block is
  appended to the code when it has none);
- the guest never has a socket, whatever allow_networking says;
- return_value is JSON-decoded from capsule's text, so a str that is itself
  valid JSON ("42") comes back decoded (42).
"""
from __future__ import annotations

import asyncio
import json
import re
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Sequence

from ._sandbox import Sandbox

__all__ = ["CodeSandbox", "code_sandbox", "LogHandler"]

LogHandler = Callable[[str, str], None]  # (level, message)

_LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
_SCRIPT_BLOCK = re.compile(r"^# /// script\s*$", re.MULTILINE)


class CodeSandbox:
    """What `async with code_sandbox(...)` gives: eval() runs code."""

    def __init__(self, sandbox: Sandbox, dependencies: Sequence[str],
                 log: Optional[Callable[[str, str], None]]) -> None:
        self._sandbox = sandbox
        self._dependencies = list(dependencies)
        self._log = log

    def _with_dependencies(self, code: str) -> str:
        if not self._dependencies or _SCRIPT_BLOCK.search(code):
            return code
        # At the end, so that the program's line numbers do not move.
        lines = ["", "# /// script", "# dependencies = ["]
        lines += [f"#   {json.dumps(requirement)}," for requirement in self._dependencies]
        lines += ["# ]", "# ///", ""]
        return code.rstrip("\n") + "\n" + "\n".join(lines)

    async def eval(self, code: str, globals: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Runs `code` in a fresh interpreter; `globals` (JSON values) are
        bound first.  Returns mcp-run-python's result dictionary."""
        chunks: List[bytes] = []
        partial = {"stdout": b"", "stderr": b""}  # the line being written, per stream
        log = self._log

        def log_lines(stream: str, final: bool) -> None:
            *lines, rest = partial[stream].split(b"\n")
            if final and rest:
                lines.append(rest)
                rest = b""
            partial[stream] = rest
            for line in lines:
                if log:
                    log("warning" if stream == "stderr" else "info", line.decode("utf-8", "replace"))

        def on_output(stream: str, data: bytes) -> None:
            chunks.append(data)
            partial[stream] += data
            log_lines(stream, final=False)

        def on_progress(message: str) -> None:
            if log:
                log("info", message)

        result = await self._sandbox.run_async(
            self._with_dependencies(code), globals=globals, return_json=True,
            on_output=on_output, on_progress=on_progress)
        for stream in ("stdout", "stderr"):
            log_lines(stream, final=True)
        output = b"".join(chunks).decode("utf-8", "replace").splitlines()
        if result.status == "success":
            return {"status": "success", "output": output,
                    "return_value": _decoded(result.return_value)}
        status = "install-error" if result.status == "install-error" else "run-error"
        return {"status": status, "output": output, "error": result.error or result.status}


def _decoded(value: Optional[str]) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value


@asynccontextmanager
async def code_sandbox(
    *,
    dependencies: Optional[List[str]] = None,
    log_handler: Optional[LogHandler] = None,
    logging_level: Optional[str] = None,
    allow_networking: bool = True,
    **sandbox_options: Any,
) -> AsyncIterator[CodeSandbox]:
    """A sandbox for the duration of the `async with` block.

    dependencies: requirements installed for every eval;  log_handler(level,
    message): the code's output and installation news, at logging_level and
    above ("info" by default);  allow_networking: accepted for compatibility
    (the guest never has a socket; see Sandbox's network option);  other
    keywords go to Sandbox (site_packages, wheel_directories, index_urls,
    env, mounts, ...)."""
    del allow_networking  # the guest has no network either way
    if dependencies and not any(sandbox_options.get(key) for key in
                                ("site_packages", "wheel_directories", "index_urls")):
        sandbox_options["index_urls"] = ["https://pypi.org/simple/"]
    threshold = _LEVELS.index(logging_level or "info")

    def log(level: str, message: str) -> None:
        if log_handler and _LEVELS.index(level) >= threshold:
            log_handler(level, message)

    # Starting the zygote and stopping it take a while: not on the loop.
    loop = asyncio.get_running_loop()
    sandbox = await loop.run_in_executor(None, lambda: Sandbox(**sandbox_options))
    try:
        yield CodeSandbox(sandbox, dependencies or [], log if log_handler else None)
    finally:
        await loop.run_in_executor(None, sandbox.close)
