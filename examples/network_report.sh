#!/bin/sh
# Serves ip.json on 127.0.0.1, runs examples/network_report.py in capsule
# with /network/ip.json mapped to it, and writes the report to OUT_DIR.
#   examples/network_report.sh [OUT_DIR]      (default: build/network-report)
set -eu
cd "$(dirname "$0")/.."
out=${1:-build/network-report}
site=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$site"' EXIT
printf '{"ip": "203.0.113.7", "city": "Example City", "org": "Documentation Net"}\n' \
    > "$site/ip.json"
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
/usr/bin/python3 -m http.server "$port" --bind 127.0.0.1 --directory "$site" >/dev/null 2>&1 &
server=$!
for _ in 1 2 3 4 5 6 7 8 9 10; do
    /usr/bin/python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/ip.json')" \
        2>/dev/null && break
    sleep 0.2
done
build/capsule run --network "ip.json=http://127.0.0.1:$port/ip.json" \
    --allow-url "http://127.0.0.1:$port/" --output-dir "$out" examples/network_report.py
echo "--- $out/report.md"
cat "$out/report.md"
