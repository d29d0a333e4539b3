"""An agent-style script: read a resource, parse it, write a report.

Runs inside capsule.  It has no socket: /network/ip.json is fetched by the
host from an allow-listed URL when the file is opened.  Whatever lands in
/output is returned with the result (and written out by --output-dir).
"""
import json
import os

with open("/network/ip.json") as response:
    info = json.load(response)

lines = ["# Network report", ""]
for key in sorted(info):
    lines.append(f"- **{key}**: {info[key]}")
address = info.get("ip", "")
parts = address.split(".")
kind = "IPv4" if len(parts) == 4 and all(p.isdigit() for p in parts) else "other"
lines += ["", f"The address {address} is {kind}."]

os.makedirs("/output", exist_ok=True)
with open("/output/report.md", "w") as report:
    report.write("\n".join(lines) + "\n")
with open("/output/ip.json", "w") as copy:
    json.dump(info, copy, indent=2)
print(f"report written: {len(lines)} lines")
