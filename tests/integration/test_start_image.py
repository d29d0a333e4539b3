"""Start images (src/sandbox/start_image.c): the interpreter's state after
start-up, saved once and mapped by later processes instead of initialising
CPython again.

What can be observed from outside: the image file itself, and the str hash
secret, which CPython draws at initialisation.  Two processes that start
from one image share it (hash("abc") is equal); two that initialise each
draw their own.  So "the image was used" and "it was not" are both
checkable without timing anything.
"""
import os
import stat
import time

PROBE = 'print(hash("capsule start image probe"))'


def images(directory):
    return sorted(p for p in directory.iterdir() if p.name.startswith("start-")
                  and p.name.endswith(".img"))


def probe(capsule, cache, *extra):
    completed = capsule.run("--start-cache", str(cache), *extra, code=PROBE)
    assert completed.returncode == 0, completed.stderr
    return int(completed.stdout)


def test_the_first_run_saves_an_image_and_the_next_ones_start_from_it(capsule, tmp_path):
    cache = tmp_path / "cache"
    first = probe(capsule, cache)
    [image] = images(cache)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(image.stat().st_mode) == 0o600
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    # The first run initialised (and drew a secret the image now holds).
    assert probe(capsule, cache) == probe(capsule, cache) == first
    assert images(cache) == [image]


def test_without_a_cache_every_process_initialises(capsule, tmp_path):
    hashes = {probe(capsule, "none") for _ in range(3)}
    assert len(hashes) == 3
    assert not any(tmp_path.iterdir())


def test_random_is_reseeded_in_each_process_started_from_one_image(capsule, tmp_path):
    cache = tmp_path / "cache"
    code = "import random, os; print(random.random(), os.urandom(8).hex())"
    outputs = {capsule.run("--start-cache", str(cache), code=code).stdout for _ in range(3)}
    assert len(outputs) == 3


def test_another_environment_gets_its_own_image(capsule, tmp_path):
    cache = tmp_path / "cache"
    plain = probe(capsule, cache)
    with_env = probe(capsule, cache, "--env", "COLOUR=blue")
    assert len(images(cache)) == 2
    assert plain != with_env
    completed = capsule.run("--start-cache", str(cache), "--env", "COLOUR=blue",
                            code="import os; print(os.environ['COLOUR'])")
    assert completed.stdout == b"blue\n"


def test_a_program_sees_the_same_world_with_and_without_an_image(capsule, tmp_path):
    code = "\n".join([
        "import os, sys, json",
        "open('/tmp/made-by-the-run', 'w').write('x')",
        "print(json.dumps({'modules': sorted(m for m in sys.modules if not m.startswith('_')),",
        "                  'path': sys.path, 'root': sorted(os.listdir('/')),",
        "                  'tmp': sorted(os.listdir('/tmp')), 'cwd': os.getcwd(),",
        "                  'flags': str(sys.flags), 'argv': sys.argv}, sort_keys=True))",
    ])
    cache = tmp_path / "cache"
    capsule.run("--start-cache", str(cache), code="pass")  # saves the image
    assert images(cache)
    from_image = capsule.run("--start-cache", str(cache), code=code)
    initialised = capsule.run("--start-cache", "none", code=code)
    assert from_image.returncode == initialised.returncode == 0, from_image.stderr
    assert from_image.stdout == initialised.stdout


def test_a_damaged_image_is_ignored_and_written_again(capsule, tmp_path):
    cache = tmp_path / "cache"
    first = probe(capsule, cache)
    [image] = images(cache)
    size = image.stat().st_size

    def damage_and_check(damage):
        damage(image)
        again = probe(capsule, cache)
        assert again != first  # initialised: a new secret
        [rewritten] = images(cache)
        assert rewritten.stat().st_size == size
        assert probe(capsule, cache) == again  # and the new image is used
        return again

    def truncate(path):
        with open(path, "r+b") as f:
            f.truncate(size // 2)

    def bad_magic(path):
        with open(path, "r+b") as f:
            f.write(b"not an image....")

    def bad_files(path):  # the files stream, checked against its hash
        with open(path, "r+b") as f:
            f.seek(size - 3)
            byte = f.read(1)
            f.seek(size - 3)
            f.write(bytes([byte[0] ^ 0xFF]))

    def wrong_key(path):
        with open(path, "r+b") as f:
            f.seek(16)
            f.write(b"\0" * 32)

    def empty(path):
        path.write_bytes(b"")

    for damage in (truncate, bad_magic, bad_files, wrong_key, empty):
        first = damage_and_check(damage)


def test_an_image_older_than_a_day_is_replaced(capsule, tmp_path):
    cache = tmp_path / "cache"
    first = probe(capsule, cache)
    [image] = images(cache)
    two_days_ago = time.time() - 2 * 86400
    os.utime(image, (two_days_ago, two_days_ago))
    again = probe(capsule, cache)
    assert again != first
    assert images(cache)[0].stat().st_mtime > two_days_ago + 86400


def test_an_unwritable_cache_directory_only_costs_the_shortcut(capsule, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    completed = capsule.run("--start-cache", str(blocked / "cache"), code="print(6 * 7)")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == b"42\n"


def test_the_start_cache_must_be_an_absolute_path(capsule):
    completed = capsule.run("--start-cache", "relative/dir", code="pass")
    assert completed.returncode != 0
    assert b"absolute" in completed.stderr


def test_a_session_saved_from_an_image_resumes_in_an_initialised_process(capsule, tmp_path):
    cache = tmp_path / "cache"
    store = f"sqlite:{tmp_path / 'sessions.db'}"
    saved = capsule.run("--start-cache", str(cache), "--store", store, "--session", "s",
                        code="import json\nx = json.dumps({'a': 41})")
    assert saved.returncode == 0, saved.stderr
    assert images(cache)
    resumed = capsule.run("--start-cache", "none", "--store", store, "--session", "s",
                          code="print(json.loads(x)['a'] + 1)")
    assert resumed.stdout == b"42\n", resumed.stderr
    back = capsule.run("--start-cache", str(cache), "--store", store, "--session", "s",
                       code="print(x)")
    assert back.stdout == b'{"a": 41}\n', back.stderr


def test_the_guest_cannot_reach_the_image(capsule, tmp_path):
    cache = tmp_path / "cache"
    probe(capsule, cache)
    [image] = images(cache)
    completed = capsule.json(f"open({str(image)!r}, 'rb').read(16)", "--start-cache", str(cache))
    assert completed["status"] == "run-error"
    assert "FileNotFoundError" in completed["error"]


def test_the_directory_keeps_the_newest_sixteen_images_and_no_stale_files(capsule, tmp_path):
    """Every world makes a new image of ≈ 20 MB: the directory is pruned
    when one is written, so it stays bounded (START_IMAGE_MAX_COUNT)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    day_old = time.time() - 2 * 86400
    stale = cache / ("start-" + "ab" * 32 + ".img")
    stale.write_bytes(b"old")
    os.utime(stale, (day_old, day_old))
    crashed = cache / ("start-" + "cd" * 32 + ".123.tmp")
    crashed.write_bytes(b"half")
    os.utime(crashed, (day_old, day_old))
    keep = cache / "notes.txt"  # not capsule's: never touched
    keep.write_text("mine")
    for i in range(18):
        probe(capsule, cache, "--env", f"WORLD={i}")
    assert len(images(cache)) == 16
    assert not stale.exists() and not crashed.exists()
    assert keep.read_text() == "mine"
    # The newest worlds are the ones kept: the last one is still used.
    assert probe(capsule, cache, "--env", "WORLD=17") == probe(capsule, cache, "--env", "WORLD=17")
