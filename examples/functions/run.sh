#!/bin/sh
# Grants one host function, lookup_order, backed by examples/functions/orders.py
# (a host program over a SQLite database the sandbox cannot see), and runs
# examples/functions/report.py in capsule with it; every call is audited.
#   examples/functions/run.sh
set -eu
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 - "$work/orders.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, status TEXT, total REAL)")
c.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)",
              [(1, "Ada", "shipped", 42.5), (2, "Grace", "pending", 17.25)])
c.commit()
PY
cat > "$work/config.json" <<JSON
{"functions": {"lookup_order": {
    "command": ["/usr/bin/python3", "$PWD/examples/functions/orders.py", "$work/orders.db"],
    "description": "Looks an order up by its number: id, customer, status, total.",
    "input_schema": {"type": "object", "required": ["order_id"], "additionalProperties": false,
                     "properties": {"order_id": {"type": "integer", "description": "The order's number."}}},
    "timeout": 5}}}
JSON
build/capsule run --config "$work/config.json" --audit-log "$work/audit.jsonl" \
    examples/functions/report.py
echo "--- audit log"
cat "$work/audit.jsonl"
