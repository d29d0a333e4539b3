#!/usr/bin/env python3
"""Pillow and lxml inside capsule against native Python with Debian's
python3-pil and python3-lxml, in one run (docs/extensions.md).

Each workload is timed inside the interpreter that runs it (perf_counter),
so process start-up is left out; the import is timed in a fresh process.
The median of --rounds rounds is printed with the ratio to native.

Run: make bench-extensions   (or python3 bench/extensions.py --capsule build/capsule)
"""
import argparse
import json
import shutil
import statistics
import subprocess

IMPORTS = {
    "import PIL.Image, PIL.ImageDraw": "import PIL.Image, PIL.ImageDraw",
    "import lxml.etree": "import lxml.etree",
}

# One drawing, then an encoding step (the format's part of the workload).
DRAWING = """
from PIL import Image, ImageDraw
import io
for i in range(5):
    image = Image.new("RGB", (800, 600), "white")
    draw = ImageDraw.Draw(image)
    for k in range(0, 800, 20):
        draw.line((k, 0, 800 - k, 600), fill=(k % 256, 80, 160), width=2)
    draw.rectangle((100, 100, 300, 250), outline="black", fill=(200, 30, 30))
    draw.text((120, 120), "capsule %d" % i, fill="white")
    small = image.resize((400, 300))
    buffer = io.BytesIO()
"""

WORKLOADS = {
    "Pillow: draw, resize, encode PNG (800x600, x5)": DRAWING + """\
    small.save(buffer, "PNG")
""",
    "Pillow: draw, resize, encode and decode JPEG (800x600, x5)": DRAWING + """\
    small.save(buffer, "JPEG", quality=85)
    Image.open(io.BytesIO(buffer.getvalue())).load()
""",
    "lxml: parse 1 MB of XML and XPath (x5)": """
import lxml.etree as etree
document = "<root>" + "".join(
    '<item id="%d"><name>n%d</name><value>%d</value></item>' % (i, i, i * 7) for i in range(12000)
) + "</root>"
for i in range(5):
    tree = etree.fromstring(document.encode())
    total = sum(int(v) for v in tree.xpath("//item/value/text()"))
""",
    "lxml: XSLT over 2000 rows (x5)": """
import lxml.etree as etree
rows = etree.fromstring(("<rows>" + "".join("<r><a>%d</a></r>" % i for i in range(2000)) + "</rows>").encode())
transform = etree.XSLT(etree.fromstring(b'''<xsl:stylesheet version="1.0"
  xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><table><xsl:for-each select="rows/r">
    <tr><td><xsl:value-of select="a * 2"/></td></tr></xsl:for-each></table></xsl:template>
</xsl:stylesheet>'''))
for i in range(5):
    result = str(transform(rows))
""",
}


def timed(code):
    """A program that prints the seconds `code` took, measured inside."""
    return ("import time as __t\n__s = __t.perf_counter()\n" + code +
            "\nprint(__t.perf_counter() - __s)\n")


def run_capsule(capsule, program):
    completed = subprocess.run([capsule, "run", "--json", "--timeout", "120", "-c", program],
                               capture_output=True, check=True)
    result = json.loads(completed.stdout)
    assert result["status"] == "success", result
    return float(result["stdout"].split()[-1])


def run_native(python, program):
    completed = subprocess.run([python, "-c", program], capture_output=True, check=True)
    return float(completed.stdout.split()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--capsule", default="build/capsule")
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    # Debian's interpreter, which has python3-pil and python3-lxml.
    native = "/usr/bin/python3.11" if shutil.which("/usr/bin/python3.11") else "/usr/bin/python3"
    print(f"Pillow and lxml: capsule vs {native} (Debian's python3-pil, python3-lxml), "
          f"median of {options.rounds}")
    print(f"{'workload':<48} {'native':>10} {'capsule':>10} {'ratio':>7}")
    for label, code in list(IMPORTS.items()) + list(WORKLOADS.items()):
        program = timed(code)
        native_times = [run_native(native, program) for _ in range(options.rounds)]
        capsule_times = [run_capsule(options.capsule, program) for _ in range(options.rounds)]
        n, c = statistics.median(native_times), statistics.median(capsule_times)
        print(f"{label:<48} {n * 1000:>8.1f}ms {c * 1000:>8.1f}ms {c / n:>6.2f}x")


if __name__ == "__main__":
    main()
