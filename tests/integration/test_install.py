"""Installing capsule like any C library and any Python tool (docs/install.md):
`make install` into a temporary DESTDIR, then examples/embed.c compiled with
`pkg-config --cflags --libs capsule` and run from there; the wheel installed
into a fresh virtual environment; the Debian package built, installed,
checked with `capsule check`, and removed.

Nothing is left in /usr or /usr/local: the DESTDIR and the venv are
temporary directories, and the package is purged in a `finally`.
"""
import json
import os
import pathlib
import shutil
import subprocess
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
VERSION = next(line.split('"')[1] for line in (ROOT / "include/capsule.h").read_text().splitlines()
               if line.startswith("#define CAP_VERSION"))


def run(command, **kwargs):
    kwargs.setdefault("timeout", 600)
    completed = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert completed.returncode == 0, (command, completed.stdout, completed.stderr)
    return completed


def make(*targets):
    return run(["make", "--no-print-directory", "-s", *targets], cwd=ROOT)


def files_under(directory):
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                  if p.is_file() or p.is_symlink())


@pytest.fixture(scope="module")
def destdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("destdir")
    make("install", f"DESTDIR={root}")
    return root


def test_install_lays_out_the_fhs_paths(destdir):
    prefix = destdir / "usr/local"
    assert files_under(destdir) == sorted(f"usr/local/{p}" for p in [
        "bin/capsule",
        "include/capsule.h",
        "lib/capsule/stdlib.img",
        "lib/capsule/tzdata.img",
        f"lib/libcapsule.so.{VERSION}",
        "lib/libcapsule.so.0",
        "lib/libcapsule.so",
        "lib/libcapsule.a",
        "lib/pkgconfig/capsule.pc",
        "share/man/man1/capsule.1",
        "share/bash-completion/completions/capsule",
        "share/doc/capsule/api.md",
    ])
    assert os.readlink(prefix / "lib/libcapsule.so") == "libcapsule.so.0"
    assert os.readlink(prefix / "lib/libcapsule.so.0") == f"libcapsule.so.{VERSION}"
    dynamic = run(["readelf", "-d", str(prefix / f"lib/libcapsule.so.{VERSION}")]).stdout
    assert "Library soname: [libcapsule.so.0]" in dynamic
    # Only the API is exported, versioned; the VFS and w2c_* symbols are not.
    exported = run(["nm", "-D", "--defined-only", str(prefix / "lib/libcapsule.so.0")]).stdout.split("\n")
    names = [line.split()[-1] for line in exported if line.strip()]
    assert "cap_sandbox_run@@CAPSULE_0" in names
    assert [n for n in names if not n.startswith("cap_") and n != "CAPSULE_0"] == []
    # The static archive hides the internals too.
    archive = run(["nm", "--defined-only", "-g", str(prefix / "lib/libcapsule.a")]).stdout
    globals_ = [line.split()[-1] for line in archive.splitlines() if line.count(" ") >= 2]
    assert "cap_sandbox_run" in globals_
    assert [n for n in globals_ if not n.startswith("cap_")] == []


def test_installed_binary_finds_its_stdlib_in_lib_capsule(destdir):
    binary = destdir / "usr/local/bin/capsule"
    assert not (binary.parent / "stdlib.img").exists()
    completed = run([str(binary), "run", "--json", "-c", "import sys; sys.platform"])
    assert '"return_value":"\'wasi\'"' in completed.stdout


def test_mcp_client_configs_start_the_installed_server(destdir):
    """Each example config's command line, with the installed binary
    (relocated into DESTDIR), answers a tool call over stdio."""
    configs = sorted((ROOT / "examples/mcp").glob("*.json"))
    assert len(configs) == 3
    for config in configs:
        data = json.loads(config.read_text())
        (server,) = (data.get("mcpServers") or data["servers"]).values()
        assert server["command"] == "/usr/local/bin/capsule"
        requests = [
            {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": {"name": "test_install", "version": "0"}}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "run_python_code", "arguments": {"python_code": "print(6 * 7)"}}},
        ]
        # stdin stays open until the answer: at EOF the server cancels what runs.
        process = subprocess.Popen([str(destdir) + server["command"], *server["args"]], text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        watchdog = threading.Timer(60, process.kill)
        watchdog.start()
        try:
            process.stdin.write("".join(json.dumps(r) + "\n" for r in requests))
            process.stdin.flush()
            answer = None
            for line in process.stdout:
                message = json.loads(line)
                if message.get("id") == 2:
                    answer = message
                    break
        finally:
            watchdog.cancel()
            process.stdin.close()
            process.wait(timeout=30)
        assert answer is not None, config.name
        assert answer["result"]["structuredContent"]["output"] == "42", config.name


def test_man_page_and_completion_load(destdir):
    page = run(["man", "--warnings", "-l", str(destdir / "usr/local/share/man/man1/capsule.1")],
               env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0"})
    assert "capsule - run untrusted Python" in page.stdout
    assert page.stderr == ""
    script = destdir / "usr/local/share/bash-completion/completions/capsule"
    complete = """
        source /usr/share/bash-completion/bash_completion
        source "$0"
        complete -p capsule
        for line in "capsule se" "capsule run --ti" "capsule serve --no-"; do
            read -ra COMP_WORDS <<< "$line"
            COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )) COMP_LINE=$line COMP_POINT=${#line}
            _capsule
            echo "$line: ${COMPREPLY[*]}"
        done
    """
    completion = run(["bash", "-c", complete, str(script)])
    assert "-F _capsule capsule" in completion.stdout
    assert "capsule se: serve\n" in completion.stdout
    assert "capsule run --ti: --timeout\n" in completion.stdout
    assert "capsule serve --no-: --no-auth --no-store\n" in completion.stdout


def embed_environment(destdir):
    return {**os.environ,
            "PKG_CONFIG_PATH": str(destdir / "usr/local/lib/pkgconfig"),
            "PKG_CONFIG_SYSROOT_DIR": str(destdir)}


def check_embed_output(completed):
    assert "status: success" in completed.stdout
    assert "stdout: hello from wasi" in completed.stdout
    assert "return value: 42" in completed.stdout


def test_embed_c_builds_with_pkg_config_and_runs(destdir, tmp_path):
    environment = embed_environment(destdir)
    flags = run(["pkg-config", "--cflags", "--libs", "capsule"], env=environment).stdout.split()
    assert f"-I{destdir}/usr/local/include" in flags
    assert f"-L{destdir}/usr/local/lib" in flags
    program = tmp_path / "embed"
    run(["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", str(ROOT / "examples/embed.c"),
         "-o", str(program), *flags], env=environment)
    # The library finds stdlib.img in lib/capsule/ beside itself.
    completed = run([str(program)], env={**os.environ, "LD_LIBRARY_PATH": str(destdir / "usr/local/lib")})
    check_embed_output(completed)
    assert "libcapsule.so.0" in run(["ldd", str(program)], env={
        **os.environ, "LD_LIBRARY_PATH": str(destdir / "usr/local/lib")}).stdout
    failed = run_allowing_failure([str(program), "raise SystemExit(3)"],
                                  env={**os.environ, "LD_LIBRARY_PATH": str(destdir / "usr/local/lib")})
    assert failed.returncode == 1 and "status: run-error" in failed.stdout


def run_allowing_failure(command, **kwargs):
    return subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)


def test_embed_c_links_the_static_library(destdir):
    environment = embed_environment(destdir)
    cflags = run(["pkg-config", "--cflags", "capsule"], env=environment).stdout.split()
    private = [flag for flag in run(["pkg-config", "--static", "--libs-only-l", "capsule"],
                                    env=environment).stdout.split() if flag != "-lcapsule"]
    # In bin/, so that it finds the image at ../lib/capsule/stdlib.img.
    program = destdir / "usr/local/bin/embed-static"
    try:
        run(["gcc", "-std=c11", str(ROOT / "examples/embed.c"), "-o", str(program), *cflags,
             str(destdir / "usr/local/lib/libcapsule.a"), *private])
        assert "libcapsule" not in run(["ldd", str(program)]).stdout
        check_embed_output(run([str(program)]))
    finally:
        program.unlink(missing_ok=True)


def test_uninstall_removes_every_file(tmp_path):
    make("install", f"DESTDIR={tmp_path}", "PREFIX=/opt/capsule")
    assert (tmp_path / "opt/capsule/lib/pkgconfig/capsule.pc").read_text().count("prefix=/opt/capsule") == 1
    make("uninstall", f"DESTDIR={tmp_path}", "PREFIX=/opt/capsule")
    assert files_under(tmp_path) == []


def test_wheel_installs_into_a_fresh_venv(tmp_path):
    make("wheel")
    wheels = list((BUILD / "dist").glob(f"capsule_sandbox-{VERSION}-py3-none-linux_x86_64.whl"))
    assert len(wheels) == 1
    venv = tmp_path / "venv"
    run(["/usr/bin/python3", "-m", "venv", str(venv)])
    run([str(venv / "bin/pip"), "install", "--no-index", "--quiet", str(wheels[0])])
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("CAPSULE_LIBRARY", "PYTHONPATH")}
    # From elsewhere than the source tree, so that only the wheel can answer.
    completed = run([str(venv / "bin/python"), str(ROOT / "examples/embed.py")],
                    cwd=tmp_path, env=environment)
    assert "status: success" in completed.stdout
    assert "stdout: hello from wasi" in completed.stdout
    assert "artifact: squares.csv text/csv b'0\\n1\\n4\\n9'" in completed.stdout
    assert "session: 42" in completed.stdout
    assert "code_sandbox: {'status': 'success', 'output': ['async'], 'return_value': {'answer': 42}}" \
        in completed.stdout
    where = run([str(venv / "bin/python"), "-c", "import capsule; print(capsule.library_path())"],
                cwd=tmp_path, env=environment).stdout
    assert where.startswith(str(venv)), where


def package_installed(name):
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
    return "install ok installed" in status.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="installing a .deb needs root")
def test_deb_installs_and_capsule_check_passes(tmp_path):
    if package_installed("capsule"):
        pytest.skip("a capsule package is already installed here: not touching it")
    package = pathlib.Path(make("deb").stdout.strip().splitlines()[-1])
    package = package if package.is_absolute() else ROOT / package
    assert package.name == f"capsule_{VERSION}-1_amd64.deb"
    fields = run(["dpkg-deb", "--field", str(package), "Depends"]).stdout
    assert "libseccomp2" in fields and "libcjson1" in fields
    try:
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
             "-o", "DPkg::Lock::Timeout=300", str(package)],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        assert package_installed("capsule")
        check = run(["/usr/bin/capsule", "check"], timeout=300)
        assert "FAIL" not in check.stdout
        # The installed library through the system's pkg-config and ld.so.
        program = tmp_path / "embed"
        flags = run(["pkg-config", "--cflags", "--libs", "capsule"],
                    env={k: v for k, v in os.environ.items() if not k.startswith("PKG_CONFIG")}).stdout
        run(["gcc", str(ROOT / "examples/embed.c"), "-o", str(program), *flags.split()])
        check_embed_output(run([str(program)]))
    finally:
        subprocess.run(["dpkg", "--purge", "capsule"], capture_output=True, timeout=300)
    assert not package_installed("capsule")
    assert not pathlib.Path("/usr/bin/capsule").exists()
    assert shutil.which("capsule") is None or not shutil.which("capsule").startswith("/usr/bin")
