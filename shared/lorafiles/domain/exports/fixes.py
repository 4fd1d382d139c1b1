"""Text fixes applied to exports only (the v4 outputs keep the text as written) and text scans."""
from __future__ import annotations

import re

# A backslash followed by n, " or t, as left in the text by double escaping upstream.
_LITERAL_ESCAPE = re.compile(r'\\([nt"])')
_REPLACEMENT = {"n": "\n", "t": "\t", '"': '"'}
_ALLOWED_CONTROL = frozenset("\n\r\t")
# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F (a set the Stability Policy
# fixes for good); less newline, CR and tab. One regex scan instead of a category lookup per
# character (tests check it against unicodedata over every code point).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def has_literal_escapes(text: str) -> bool:
    return _LITERAL_ESCAPE.search(text) is not None


def fix_literal_escapes(text: str) -> str:
    r"""Literal `\n`, `\"`, `\t` (two characters each) become a newline, a quote, a tab."""
    return _LITERAL_ESCAPE.sub(lambda m: _REPLACEMENT[m.group(1)], text)


def is_truncated(text: str) -> bool:
    """A target cut off mid-sentence: it ends in a backslash once trailing whitespace is removed."""
    return text.rstrip().endswith("\\")


def is_blank(text: str) -> bool:
    return not text.strip()


def control_characters(text: str) -> list[str]:
    """Distinct control characters (Unicode category Cc) other than newline, CR and tab, as U+XXXX."""
    found = set(_CONTROL.findall(text))
    return [f"U+{ord(c):04X}" for c in sorted(found)]


def invalid_unicode(text: str) -> str | None:
    """The first code point that cannot be encoded as UTF-8 (a lone surrogate), as U+XXXX, or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"U+{ord(text[exc.start]):04X}"
    return None
