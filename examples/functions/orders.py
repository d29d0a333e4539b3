#!/usr/bin/env python3
"""A host function for capsule (runs in the host, not the sandbox): looks
orders up in a small SQLite database it alone can open.  Called by capsule
with the JSON arguments on stdin; prints the JSON result on stdout; says
what went wrong on stderr with a non-zero status.

The database path comes from this program's own argv, which the guest
never sees."""
import json
import sqlite3
import sys

database = sys.argv[1]
arguments = json.load(sys.stdin)
connection = sqlite3.connect(database)
row = connection.execute("SELECT id, customer, status, total FROM orders WHERE id = ?",
                         (arguments["order_id"],)).fetchone()
if row is None:
    print(f"no order {arguments['order_id']}", file=sys.stderr)
    sys.exit(1)
json.dump(dict(zip(("id", "customer", "status", "total"), row)), sys.stdout)
