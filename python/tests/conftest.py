"""Fixtures for the Python binding's tests, against a built libcapsule
(CAPSULE_LIBRARY, set by `make python-test`, or an installed one).

Guest code here only ever runs inside capsule: the session refuses to start
unless the sandbox reports that it is the WASI guest.
"""
import pytest

import capsule


@pytest.fixture(scope="session")
def sandbox():
    with capsule.Sandbox(pool_size=1) as instance:
        probe = instance.run("import sys; sys.platform")
        if probe.return_value != "'wasi'":
            pytest.exit("refusing to run: the guest is not the WASI sandbox", 2)
        yield instance
