"""capsule: what the sandbox grants this program beyond files.

capsule.functions  the host functions granted to this run, as plain Python
                   functions (``from capsule.functions import lookup_order``).
"""
