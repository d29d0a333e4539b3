"""Pillow's codecs compiled into the guest (guest/extensions/pillow.sh):
TIFF through libtiff, WebP through libwebp, JPEG 2000 through OpenJPEG and
colour management through lcms2.

Guest code runs only through capsule, with each binary (release, and ASan
when built).  The host only decodes what the guest wrote, as data, with
Debian's python3-pil when it is installed: a second, independent reader
of the files.
"""
import ast
import hashlib
import io

import pytest

# _webp's two no-argument functions are defined f() in Pillow's C; the
# build gives them CPython's (self, NULL) (a mismatch would trap).
FEATURES = """
from PIL import features, _webp
names = ('libtiff', 'webp', 'webp_anim', 'webp_mux', 'transp_webp', 'jpg_2000', 'littlecms2', 'zlib')
({n: features.check(n) for n in names},
 {n: features.version(n) for n in ('libtiff', 'webp', 'jpg_2000', 'littlecms2')},
 _webp.WebPDecoderVersion(), _webp.WebPDecoderBuggyAlpha())
"""


def _value(result):
    assert result["status"] == "success", result["error"]
    return ast.literal_eval(result["return_value"])


def test_pillow_reports_each_codec_with_its_version(capsule):
    checks, versions, webp_version, buggy_alpha = _value(capsule.json(FEATURES))
    assert checks == {name: True for name in checks}, checks
    assert versions == {"libtiff": "4.5.0", "webp": "1.2.4", "jpg_2000": "2.5.0",
                        "littlecms2": "2.14"}
    assert (webp_version, buggy_alpha) == (0x010204, 0)


# A 64x48 RGB image whose every pixel differs from its neighbours: a lossless
# round trip that drops or reorders anything shows.
GRADIENT = """
from PIL import Image
import io
image = Image.new('RGB', (64, 48))
image.putdata([((x * 4) % 256, (y * 5) % 256, (x * y) % 256) for y in range(48) for x in range(64)])
"""


def test_tiff_deflate_round_trip(capsule, tmp_path):
    out = tmp_path / "out"
    result = capsule.json(GRADIENT + (
        "image.save('/output/deflate.tif', compression='tiff_adobe_deflate')\n"
        "image.save('/output/lzw.tif', compression='tiff_lzw')\n"
        "back = Image.open('/output/deflate.tif'); back.load()\n"
        "lzw = Image.open('/output/lzw.tif'); lzw.load()\n"
        "(back.info['compression'], back.mode, back.size, back.tobytes() == image.tobytes(),"
        " lzw.info['compression'], lzw.tobytes() == image.tobytes())"),
        "--output-dir", str(out))
    assert _value(result) == ("tiff_adobe_deflate", "RGB", (64, 48), True, "tiff_lzw", True)
    data = (out / "deflate.tif").read_bytes()
    assert data[:4] == b"II*\x00"
    # Deflate-compressed: smaller than the 9216 bytes of raw pixels.
    assert len(data) < 64 * 48 * 3
    Image = pytest.importorskip("PIL.Image")
    decoded = Image.open(io.BytesIO(data))
    assert decoded.info["compression"] == "tiff_adobe_deflate"
    assert decoded.getpixel((10, 7)) == (40, 35, 70)


def test_tiff_with_jpeg_compression_round_trips(capsule, tmp_path):
    """libtiff's JPEG codec (tif_jpeg.c, through the guest's libjpeg): a
    JPEG-compressed TIFF written and read back, near the original (lossy);
    Debian's native Pillow reads the same file."""
    out = tmp_path / "out"
    result = capsule.json(GRADIENT + (
        "image.save('/output/jpeg.tif', compression='jpeg', quality=90)\n"
        "back = Image.open('/output/jpeg.tif'); back.load()\n"
        "worst = max(abs(a - b) for a, b in zip(back.convert('RGB').tobytes(), image.tobytes()))\n"
        "(back.info['compression'], back.size, worst < 64, back.convert('RGB').getpixel((10, 7)))"),
        "--output-dir", str(out))
    compression, size, close, pixel = _value(result)
    assert (compression, size, close) == ("jpeg", (64, 48), True)
    assert all(abs(a - b) <= 24 for a, b in zip(pixel, (40, 35, 70))), pixel
    data = (out / "jpeg.tif").read_bytes()
    assert data[:4] == b"II*\x00"
    Image = pytest.importorskip("PIL.Image")
    decoded = Image.open(io.BytesIO(data))
    assert decoded.info["compression"] == "jpeg"
    assert all(abs(a - b) <= 24 for a, b in zip(decoded.convert("RGB").getpixel((10, 7)),
                                                 (40, 35, 70)))


def test_webp_round_trips_lossless_lossy_and_animated(capsule, tmp_path):
    out = tmp_path / "out"
    result = capsule.json(GRADIENT + (
        "image.save('/output/lossless.webp', lossless=True)\n"
        "exact = Image.open('/output/lossless.webp').convert('RGB')\n"
        "lossy = io.BytesIO(); image.save(lossy, 'WEBP', quality=50)\n"
        "alpha = image.convert('RGBA'); alpha.putalpha(Image.linear_gradient('L').resize((64, 48)))\n"
        "rgba = io.BytesIO(); alpha.save(rgba, 'WEBP', lossless=True, exact=True)\n"
        "frames = [Image.new('RGB', (32, 32), c) for c in ('red', 'green', 'blue')]\n"
        "anim = io.BytesIO()\n"
        "frames[0].save(anim, 'WEBP', save_all=True, append_images=frames[1:], duration=100, lossless=True)\n"
        "a = Image.open(io.BytesIO(anim.getvalue())); a.seek(2)\n"
        "l = Image.open(io.BytesIO(lossy.getvalue()))\n"
        "(exact.tobytes() == image.tobytes(), l.format, l.mode, l.size, len(lossy.getvalue()) < 9216,"
        " Image.open(io.BytesIO(rgba.getvalue())).tobytes() == alpha.tobytes(), a.n_frames,"
        " a.convert('RGB').getpixel((5, 5)))"),
        "--output-dir", str(out))
    assert _value(result) == (True, "WEBP", "RGB", (64, 48), True, True, 3, (0, 0, 255))
    data = (out / "lossless.webp").read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    Image = pytest.importorskip("PIL.Image")
    assert Image.open(io.BytesIO(data)).convert("RGB").getpixel((10, 7)) == (40, 35, 70)


def test_a_webp_is_an_image_artifact(capsule):
    result = capsule.json("from PIL import Image\n"
                          "Image.new('RGB', (40, 30), 'orange').save('/output/box.webp')")
    assert result["status"] == "success", result["error"]
    (artifact,) = result["artifacts"]
    assert artifact["name"] == "box.webp" and artifact["media_type"] == "image/webp"


def test_jpeg_2000_round_trip(capsule, tmp_path):
    out = tmp_path / "out"
    result = capsule.json(GRADIENT + (
        "image.save('/output/lossless.jp2')\n"
        "back = Image.open('/output/lossless.jp2'); back.load()\n"
        "stream = io.BytesIO(); image.save(stream, 'JPEG2000', no_jp2=True,"
        " quality_mode='rates', quality_layers=[20])\n"
        "lossy = Image.open(io.BytesIO(stream.getvalue())); lossy.load()\n"
        "(back.format, back.mode, back.size, back.tobytes() == image.tobytes(),"
        " stream.getvalue()[:4].hex(), lossy.size, len(stream.getvalue()) < 9216 // 10)"),
        "--output-dir", str(out))
    assert _value(result) == ("JPEG2000", "RGB", (64, 48), True, "ff4fff51", (64, 48), True)
    data = (out / "lossless.jp2").read_bytes()
    assert data[4:8] == b"jP  "
    Image = pytest.importorskip("PIL.Image")
    assert Image.open(io.BytesIO(data)).convert("RGB").getpixel((10, 7)) == (40, 35, 70)


# In-gamut colours: sRGB to 8-bit LAB and back loses a little (a and b are
# whole units; Debian's native Pillow and lcms2 2.14 give the same: mean
# 1.3, at most 15 on this image).
MUTED = """
from PIL import Image, ImageCms
import hashlib
image = Image.new('RGB', (64, 48))
image.putdata([(60 + x * 2, 60 + y * 3, 200 - x - y) for y in range(48) for x in range(64)])
"""


def test_imagecms_rgb_to_lab_and_back(capsule):
    result = capsule.json(MUTED + (
        "srgb, lab = ImageCms.createProfile('sRGB'), ImageCms.createProfile('LAB')\n"
        "to_lab = ImageCms.buildTransformFromOpenProfiles(srgb, lab, 'RGB', 'LAB')\n"
        "to_rgb = ImageCms.buildTransformFromOpenProfiles(lab, srgb, 'LAB', 'RGB')\n"
        "as_lab = ImageCms.applyTransform(image, to_lab)\n"
        "back = ImageCms.applyTransform(as_lab, to_rgb)\n"
        "errors = [max(abs(p - q) for p, q in zip(a, b)) for a, b in zip(image.getdata(), back.getdata())]\n"
        "white = ImageCms.applyTransform(Image.new('RGB', (1, 1), 'white'), to_lab).getpixel((0, 0))\n"
        "red = ImageCms.applyTransform(Image.new('RGB', (1, 1), 'red'), to_lab).getpixel((0, 0))\n"
        "(as_lab.mode, back.mode, max(errors), sum(errors) / len(errors), white, red,"
        " ImageCms.getProfileName(srgb).strip(), hashlib.sha256(as_lab.tobytes()).hexdigest())"))
    mode, back_mode, worst, mean, white, red, name, digest = _value(result)
    assert (mode, back_mode) == ("LAB", "RGB")
    assert worst <= 16 and mean <= 2, (worst, mean)
    # Pillow's LAB: L scaled to 0-255, a and b offset by 128.  White is
    # L=100, a=b=0; sRGB red is about L=53, a=80, b=67.
    assert white[0] >= 254 and abs(white[1] - 128) <= 1 and abs(white[2] - 128) <= 1, white
    assert abs(red[0] - 137) <= 3 and red[1] > 190 and red[2] > 180, red
    assert "sRGB" in name
    # The same LAB bytes as Debian's native Pillow with lcms2 computes.
    ImageCms = pytest.importorskip("PIL.ImageCms")
    from PIL import Image
    image = Image.new("RGB", (64, 48))
    image.putdata([(60 + x * 2, 60 + y * 3, 200 - x - y) for y in range(48) for x in range(64)])
    native = ImageCms.applyTransform(image, ImageCms.buildTransformFromOpenProfiles(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"))
    assert hashlib.sha256(native.tobytes()).hexdigest() == digest


# Each format's valid file, then damaged copies of it: truncated at several
# points and with bytes flipped in the payload (seeded, so the same copies
# every run).  Each must be a Python exception or a (garbage) image, never
# a trap: the loop finishing and the last line running is what is tested.
CORRUPT = GRADIENT + """
import random
from PIL import ImageCms
def encoded(fmt, **options):
    buf = io.BytesIO(); image.save(buf, fmt, **options); return buf.getvalue()
valid = {'TIFF': encoded('TIFF', compression='tiff_adobe_deflate'),
         'TIFF-JPEG': encoded('TIFF', compression='jpeg'),
         'WEBP': encoded('WEBP', quality=80),
         'WEBP-lossless': encoded('WEBP', lossless=True),
         'JPEG2000': encoded('JPEG2000')}
rng = random.Random(14)
raised, decoded = {}, {}
for name, data in valid.items():
    copies = [data[:n] for n in (8, 16, 40, len(data) // 2, len(data) - 3)]
    for _ in range(12):
        damaged = bytearray(data)
        for _ in range(8):
            damaged[rng.randrange(len(data) // 4, len(data))] ^= 1 << rng.randrange(8)
        copies.append(bytes(damaged))
    for copy in copies:
        try:
            im = Image.open(io.BytesIO(copy))
            im.load()
            decoded[name] = decoded.get(name, 0) + 1
        except Exception as e:
            raised.setdefault(name, set()).add(type(e).__name__)
try:
    ImageCms.ImageCmsProfile(io.BytesIO(b'acsp' * 40))
except Exception as e:
    raised['ICC'] = {type(e).__name__}
after = Image.new('L', (3, 3), 7).getpixel((1, 1))
({k: sorted(v) for k, v in raised.items()}, after)
"""


def test_corrupt_files_raise_python_exceptions_and_the_run_goes_on(capsule):
    raised, after = _value(capsule.json(CORRUPT, timeout=300))
    assert after == 7
    assert set(raised) == {"TIFF", "TIFF-JPEG", "WEBP", "WEBP-lossless", "JPEG2000", "ICC"}, raised
    expected = {"OSError", "UnidentifiedImageError", "SyntaxError", "ValueError",
                "EOFError", "PyCMSError", "TypeError"}
    for name, kinds in raised.items():
        assert set(kinds) <= expected, (name, kinds)
    # The host carries on: the next run in the same binary works.
    assert _value(capsule.json("from PIL import features\nfeatures.check('webp')")) is True
