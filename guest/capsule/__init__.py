"""capsule: what the sandbox grants this program beyond files.

capsule.functions  the host functions granted to this run, as plain Python
                   functions (``from capsule.functions import lookup_order``).
capsule.tools      the tools of MCP servers (code mode): ``search(query)``; each
                   tool is ``from servers.<server> import <tool>``.
"""
