"""cli_eval_plot — `routescore eval --plot` writes the format its file name asks
for, on a small GSM8K-shaped benchmark generated here (so it needs no
../shared/data): one drawing (cli_eval_plot.c) on three surfaces.

- PNG: the signature, IHDR (680 x 440, 8-bit RGB/RGBA), the IDAT stream
  inflated with zlib and unfiltered (PNG filters 0-4) into pixels; the plot
  box is not blank, and blue (router) pixels lie on every one of the 11
  points eval printed (--json), placed by the layout of cli_eval_plot.c
  (box x 70..590, y 40..380; y over the padded range of W, S, the oracle and
  the points), and the oracle's green is there.
- SVG: parses as XML; one blue stroked path runs through the 11 points'
  coordinates (its vertices are points, in order; cairo drops collinear ones).
- PDF: a one-page PDF with the 680 x 440 MediaBox.
- Names in any case (.PNG); a missing folder: exit 2 naming the file, and
  an existing plot is replaced only by a whole new one.
The refusals of unknown names are tests/cli/cli_eval_plot_ext.sh's."""
import json
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zlib

BIN = os.environ.get("RS_BIN") or os.path.join(os.path.dirname(__file__), "..", "..", "build", "routescore")
W_PX, H_PX, X0, Y0, PW, PH = 680, 440, 70, 40, 520, 340
failures = 0


def check(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg)
    return cond


def make_benchmark(root, n, rng):
    """A GSM8K-shaped data folder: the responses CSV and a contaminated prompt."""
    os.makedirs(os.path.join(root, "gsm8k"))
    rows = []
    for i in range(n):
        weak = rng.random() < 0.55
        strong = weak or rng.random() < 0.6
        rows.append((f"question {i}: what is {i} + {i * 7 % 13}, \"exactly\"?", weak, strong))
    with open(os.path.join(root, "gsm8k", "gsm8k_responses.csv"), "w", encoding="utf-8") as f:
        f.write("prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\n")
        for p, w, s in rows + [("contaminated one", True, True)]:
            f.write('"%s",%s,%s\n' % (p.replace('"', '""'), w, s))
    with open(os.path.join(root, "gsm8k", "contaminated_prompts.jsonl"), "w") as f:
        f.write(json.dumps({"eval_prompt": "contaminated one"}) + "\n")
    return rows


def run_plot(data, scores, out):
    return subprocess.run([BIN, "eval", "--benchmark", "gsm8k", "--data", data, "--scores", scores, "--json",
                           "--plot", out], capture_output=True, text=True)


def expected_points(res, rows):
    """Pixel positions of the router's points, by cli_eval_plot.c's layout."""
    n = len(rows)
    wsum = sum(w for _, w, _ in rows)
    gain_pos = sum(1 for _, w, s in rows if s and not w)
    oracle = [(wsum + min(k / 100 * n, gain_pos)) / n * 100 for k in range(101)]
    qs = [res["weak_quality"], res["strong_quality"]] + oracle + [p["quality"] for p in res["points"]]
    lo, hi = min(qs), max(qs)
    pad = (hi - lo) * 0.05 + 1e-9
    lo, hi = lo - pad, hi + pad
    return [(X0 + p["strong_share"] / 100 * PW, Y0 + PH - (p["quality"] - lo) / (hi - lo) * PH)
            for p in res["points"]]


def png_pixels(path):
    data = open(path, "rb").read()
    if not check(data[:8] == b"\x89PNG\r\n\x1a\n", "PNG signature"):
        return None
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        ln, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + ln]
        crc = struct.unpack(">I", data[pos + 8 + ln:pos + 12 + ln])[0]
        check(zlib.crc32(typ + body) == crc, f"PNG chunk {typ} CRC")
        if typ == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat += body
        pos += 12 + ln
        if typ == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = ihdr
    check((w, h) == (W_PX, H_PX), f"PNG size {w}x{h}, want {W_PX}x{H_PX}")
    if not check(depth == 8 and ctype in (2, 6) and interlace == 0, f"PNG depth {depth} type {ctype}"):
        return None
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    check(len(raw) == h * (stride + 1), "IDAT size")
    rows, prev = [], bytearray(stride)
    for y in range(h):
        ft, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ft == 1:
                line[i] = (line[i] + a) & 255
            elif ft == 2:
                line[i] = (line[i] + b) & 255
            elif ft == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            else:
                check(ft == 0, f"PNG filter type {ft}")
        rows.append(bytes(line))
        prev = line
    return lambda x, y: tuple(rows[y][x * bpp:x * bpp + 3])


def seg_dist(p, a, b):
    (x, y), (x1, y1), (x2, y2) = p, a, b
    dx, dy = x2 - x1, y2 - y1
    t = max(0.0, min(1.0, ((x - x1) * dx + (y - y1) * dy) / (dx * dx + dy * dy or 1)))
    return ((x - x1 - t * dx) ** 2 + (y - y1 - t * dy) ** 2) ** 0.5


def is_blue(c):
    return c[2] > 150 and c[0] < 120 and c[1] < 120


def is_green(c):
    return c[1] > 80 and c[0] < 100 and c[2] < 100


with tempfile.TemporaryDirectory() as tmp:
    rng = random.Random(7)
    data = os.path.join(tmp, "data")
    rows = make_benchmark(data, 400, rng)
    scores = os.path.join(tmp, "scores.jsonl")
    with open(scores, "w") as f:
        for i, (p, w, s) in enumerate(rows):  # informative but noisy: a curve above random
            f.write(json.dumps({"prompt": p, "win_prob": (0.5 if s and not w else 0.0) + rng.random()}) + "\n")

    png = os.path.join(tmp, "plot.png")
    with open(png, "w") as f:
        f.write("old")
    r = run_plot(data, scores, png)
    if check(r.returncode == 0, f"png run: exit {r.returncode}: {r.stderr}"):
        res = json.loads(r.stdout)
        check(res["items"] == 400, f"{res['items']} items, want 400 (the contaminated row dropped)")
        pts = expected_points(res, rows)
        px = png_pixels(png)
        if px:
            box = [(x, y) for y in range(Y0 + 2, Y0 + PH - 1) for x in range(X0 + 2, X0 + PW - 1)]
            ink = sum(1 for x, y in box if px(x, y) != (255, 255, 255))
            check(ink > 3000, f"PNG plot box has {ink} non-white pixels")
            check(sum(1 for x, y in box if is_green(px(x, y))) > 200, "PNG: the oracle's green curve")
            for k, (x, y) in enumerate(pts):
                near = [px(i, j) for i in range(round(x) - 2, round(x) + 3) for j in range(round(y) - 2, round(y) + 3)
                        if 0 <= i < W_PX and 0 <= j < H_PX]
                check(any(is_blue(c) for c in near), f"PNG: no blue pixel at point {k} ({x:.1f}, {y:.1f})")
            # and the router's blue is not everywhere: far from the curve, none
            check(not is_blue(px(X0 + 5, Y0 + 5)), "PNG: blue in the box's top left corner")

        svg = os.path.join(tmp, "plot.SVG")
        r = run_plot(data, scores, svg)
        if check(r.returncode == 0, f"svg run: exit {r.returncode}: {r.stderr}"):
            root = ET.parse(svg).getroot()
            check(root.tag == "{http://www.w3.org/2000/svg}svg", f"SVG root {root.tag}")
            found = False
            for el in root.iter("{http://www.w3.org/2000/svg}path"):
                st = el.get("style", "")
                if "stroke:rgb(0%,0%,100%)" not in st.replace(" ", "") or "fill:none" not in st.replace(" ", ""):
                    continue
                nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", el.get("d", ""))]
                xy = list(zip(nums[0::2], nums[1::2]))
                # cairo drops vertices that lie on the line through their
                # neighbours: each vertex is one of the points, in order, and
                # every point lies on the polyline.
                it = iter(pts)
                if len(xy) >= 2 and all(any(abs(a - c) < 0.01 and abs(b - d) < 0.01 for c, d in it) for a, b in xy) \
                        and all(min(seg_dist(p, xy[i], xy[i + 1]) for i in range(len(xy) - 1)) < 0.02 for p in pts):
                    found = True
            check(found, "SVG: no blue stroked path with the 11 points")

        pdf = os.path.join(tmp, "plot.pdf")
        r = run_plot(data, scores, pdf)
        if check(r.returncode == 0, f"pdf run: exit {r.returncode}: {r.stderr}"):
            body = open(pdf, "rb").read()
            check(body.startswith(b"%PDF-") and body.rstrip().endswith(b"%%EOF"), "PDF header/trailer")
            check(len(re.findall(rb"/Type\s*/Page\b", body)) == 1, "PDF: one page")
            check(re.search(rb"/MediaBox\s*\[\s*0\s+0\s+680\s+440\s*\]", body) is not None, "PDF MediaBox 680 x 440")

    # A folder that does not exist: exit 2, the file named, nothing left behind.
    bad = os.path.join(tmp, "no-such-dir", "p.png")
    r = run_plot(data, scores, bad)
    check(r.returncode == 2 and "no-such-dir/p.png" in r.stderr, f"missing folder: exit {r.returncode} {r.stderr!r}")
    check(sorted(os.listdir(tmp)) == ["data", "plot.SVG", "plot.pdf", "plot.png", "scores.jsonl"],
          f"stray files: {sorted(os.listdir(tmp))}")

print("cli_eval_plot:", "FAILED" if failures else "ok")
sys.exit(1 if failures else 0)
