#!/bin/sh
# Code mode's worked example (docs/code-mode.md): the servers are started by
# capsule, in the host, with npx; the program runs in the sandbox.
set -e
here=$(dirname "$0")
mkdir -p /tmp/capsule-example
"$here/../../build/capsule" run --mcp-config "$here/servers.json" \
    --deny-function 'memory.delete_*' --audit-log /tmp/capsule-example/audit.jsonl \
    "$here/notes.py"
cat /tmp/capsule-example/graph.txt
