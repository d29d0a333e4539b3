# Code mode: one program, several tools of two MCP servers, no round trip
# through the model between them.  Run it with examples/code_mode/run.sh.
import capsule.tools
from servers.filesystem import list_directory, write_file
from servers.memory import create_entities, create_relations, read_graph

print("tools about the graph:", [hit["name"] for hit in capsule.tools.search("graph", limit=3)])

create_entities(entities=[
    {"name": "capsule", "entityType": "project", "observations": ["runs Python in wasm"]},
    {"name": "wasm2c", "entityType": "tool", "observations": ["turns wasm into C"]},
])
create_relations(relations=[{"from": "capsule", "to": "wasm2c", "relationType": "uses"}])

graph = read_graph()
lines = [f"{r['from']} {r['relationType']} {r['to']}" for r in graph["relations"]]
write_file(path="/tmp/capsule-example/graph.txt", content="\n".join(lines) + "\n")
print(list_directory(path="/tmp/capsule-example"))
