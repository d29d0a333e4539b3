"""embed.py: capsule from Python (the wheel from `make wheel`, or
PYTHONPATH=python with the library in build/).

    python3 -m venv venv && venv/bin/pip install build/dist/capsule_sandbox-*.whl
    venv/bin/python examples/embed.py
"""
import asyncio

import capsule


def main() -> None:
    with capsule.Sandbox(env={"GREETING": "hello"}) as sandbox:
        result = sandbox.run("import os, sys\nprint(os.environ['GREETING'], 'from', sys.platform)\n6 * 7",
                             timeout=10)
        print("status:", result.status)
        print("stdout:", result.stdout, end="")
        print("return value:", result.return_value)

        made = sandbox.run("open('/output/squares.csv', 'w').write('\\n'.join(str(n * n) for n in range(4)))")
        for artifact in made.artifacts:
            print("artifact:", artifact.name, artifact.media_type, artifact.data)

        with sandbox.session() as session:
            session.run("total = 40")
            print("session:", session.run("total + 2").return_value)

    async def agent() -> None:
        async with capsule.code_sandbox() as box:
            print("code_sandbox:", await box.eval("print('async')\n{'answer': 42}"))

    asyncio.run(agent())


if __name__ == "__main__":
    main()
