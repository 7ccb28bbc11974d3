"""advtext — deterministic adversarial texts for the tokenizer oracle.

The golden file (tests/data/tokenizer/minilm_golden.txt) stores only digests, so
the texts themselves are regenerated here from a fixed seed by both the golden
generator and the checking script. Change nothing here without regenerating the
golden: the texts must come out identical. Only random.Random(seed) with
randrange/choice is used, whose output is stable across Python 3 versions.

No text contains U+0000: JSON-lines input reaches the C side through cJSON,
whose strings end at the first NUL (the C unit test covers NUL directly).
"""
import random

SEED = 20240611

_PLANES = list(range(17))
_MARK_BLOCKS = [(0x300, 0x36F), (0x483, 0x489), (0x591, 0x5C7), (0x610, 0x61A), (0x64B, 0x65F),
                (0x900, 0x903), (0x93A, 0x94F), (0x1AB0, 0x1ACE), (0x1DC0, 0x1DFF), (0x20D0, 0x20F0),
                (0xFE20, 0xFE2F), (0x1D165, 0x1D169), (0x1D16D, 0x1D172), (0x1E8D0, 0x1E8D6)]
_SPACES = [" ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x85", "\xa0", "\u1680", "\u2000", "\u2003",
           "\u2009", "\u200a", "\u200b", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\ufeff"]
_EMOJI = ["\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466", "\U0001F1FA\U0001F1F8",
          "\U0001F44D\U0001F3FD", "\u2764\ufe0f", "\U0001F3F3\ufe0f\u200d\U0001F308", "\U0001F600",
          "\u0031\ufe0f\u20e3", "\U0001F9D1\u200D\U0001F4BB", "\U0001F3F4\U000E0067\U000E0062\U000E0065"
          "\U000E006E\U000E0067\U000E007F"]
_SPECIALS = ["[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "[sep]", "[Sep]", "[[SEP]]", "[SEP", "SEP]",
             "[ SEP ]", "[CLS][SEP]", "[MASK][MASK]", "##", "##ing", "[unused1]"]
_WORDS = ["the", "Tokenizer", "naïve", "café", "Straße", "İstanbul", "ΣΊΣΥΦΟΣ", "Ωμέγα", "ПРИВЕТ",
          "ﬁnance", "ﬀ", "Ⅻ", "①", "ｆｕｌｌｗｉｄｔｈ", "𝐁𝐨𝐥𝐝", "x²", "½", "™", "µ", "Å", "Å", "ǅ",
          "한국어", "한국어", "日本語", "中文字", "𠀀𪚥", "ภาษาไทย", "हिन्दी", "العربية", "עברית",
          "don't", "U.S.A.", "e-mail", "C++", "$100", "3.14159", "user@example.com", "http://x.y/z?q=1",
          "ß", "ẞ", "ŉ", "ǰ", "ﬆ", "İ", "ı", "K", "Ω", "ℌ", "ﷺ", "゙", "ｶﾞ", "ᄀ" + "ᅡ" + "ᆨ"]


def _cp(rng, plane):
    while True:
        c = plane * 0x10000 + rng.randrange(0x10000)
        if not 0xD800 <= c < 0xE000 and c != 0:
            return chr(c)


def _random_planes(rng):
    out = []
    for plane in _PLANES:
        for _ in range(40):
            n = rng.randrange(1, 30)
            parts = []
            for _ in range(n):
                r = rng.randrange(10)
                if r < 6:
                    parts.append(_cp(rng, plane))
                elif r < 8:
                    parts.append(rng.choice(_SPACES))
                else:
                    parts.append(rng.choice("abcXYZ019.,!?-'"))
            out.append("".join(parts))
    # the BMP and plane 1 hold nearly all assigned text: more of them
    for _ in range(300):
        plane = rng.choice([0, 0, 0, 1, 2])
        out.append("".join(_cp(rng, plane) if rng.randrange(3) else " " for _ in range(rng.randrange(1, 60))))
    return out


def _marks(rng):
    out = []
    for _ in range(250):
        parts = []
        for _ in range(rng.randrange(1, 8)):
            parts.append(rng.choice("aeiouAEIOUnNcCsSzZyY" + "αΑ" + "иИ" + "ㄱ가"))
            for _ in range(rng.randrange(0, 5)):
                lo, hi = rng.choice(_MARK_BLOCKS)
                parts.append(chr(rng.randrange(lo, hi + 1)))
            if rng.randrange(3) == 0:
                parts.append(" ")
        out.append("".join(parts))
    return out


def _emoji(rng):
    out = []
    for _ in range(120):
        parts = []
        for _ in range(rng.randrange(1, 10)):
            r = rng.randrange(4)
            parts.append(rng.choice(_EMOJI) if r < 2 else "\u200d" if r == 2 else rng.choice(["hi", " ", "ok", "!"]))
        out.append("".join(parts))
    return out


def _whitespace(rng):
    out = ["\r\n" * 50, "\r\n\r\n".join(["a", "b", "c"]), " " * 1000, "\t \n" * 300 + "end",
           "".join(_SPACES) * 5, "word" + " " * 5000 + "word", "\r" * 7 + "x" + "\n" * 7]
    for _ in range(100):
        out.append("".join(rng.choice(_SPACES) * rng.randrange(1, 20) + rng.choice(_WORDS)
                           for _ in range(rng.randrange(1, 12))))
    return out


def _long_words(rng):
    out = ["a" * 10000, "ab" * 5000, "é" * 10000, "中" * 3000, "x" * 100, "x" * 101, "y" * 99,
           "é" * 100, "é" * 101, "unbelievable" * 9, "unbelievable" * 8 + "unbel",
           ("antidisestablishmentarianism" * 400)[:10000], "!" * 10000, "9" * 10000,
           "a" * 100 + "!" + "b" * 101, "naïve" * 2000]
    for _ in range(40):
        n = rng.choice([98, 99, 100, 101, 102, 150, 500, 2000])
        out.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyzéü") for _ in range(n)))
    return out


def _specials(rng):
    out = list(_SPECIALS)
    out += ["hello [SEP] world", "[CLS] start", "end [SEP]", "x[SEP]y", "[MASK]ed", "a[MASK]b[MASK]c",
            "[CLS]" * 50, "[SEP][SEP] [SEP]", "what is [MASK]?", "[UNK] token", "[PAD][PAD]"]
    for _ in range(200):
        parts = []
        for _ in range(rng.randrange(1, 12)):
            r = rng.randrange(5)
            parts.append(rng.choice(_SPECIALS) if r < 2 else rng.choice(_WORDS) if r < 4 else rng.choice(_SPACES))
        out.append("".join(parts))
    return out


def _mixed(rng):
    out = []
    pool = _WORDS + _SPECIALS[:5] + list("!?.,;:()[]{}\"'«»„“”‘’—–…·•¿¡、。「」【】・") + _EMOJI
    for _ in range(500):
        sep = rng.choice([" ", "", " ", "\n"])
        out.append(sep.join(rng.choice(pool) for _ in range(rng.randrange(1, 40))))
    controls = [chr(c) for c in list(range(1, 32)) + list(range(0x7F, 0xA0))] + \
        ["\ufffd", "\ufeff", "\u200e", "\u200f", "\u202a", "\u202e", "\u2066", "\u00ad", "\u061c",
         "\ue000", "\uf8ff", "\U000F0000", "\U0010FFFD", "\ufffe", "\uffff", "\U0001FFFE", "\u0378",
         "\U000E0001", "\U000E0020", "\u0600", "\U000110BD", "\U0001BCA0"]
    for _ in range(200):
        out.append("".join(rng.choice(controls) if rng.randrange(2) else rng.choice(_WORDS) + " "
                           for _ in range(rng.randrange(1, 20))))
    return out


def texts(seed=SEED):
    """The adversarial texts, in a fixed order."""
    rng = random.Random(seed)
    out = []
    for gen in (_random_planes, _marks, _emoji, _whitespace, _long_words, _specials, _mixed):
        out += gen(rng)
    out += ["", " ", "a", "A", "[SEP]", "\u00e9", "e\u0301", "\u0130", "\u03a3", "\u1e9e"]
    assert all("\x00" not in t for t in out)
    return out
