"""Bytes to text: UTF-8 first, then charset-normalizer's detection; binary data is refused.

A file that is not text despite its extension (an image renamed ``.txt``, random bytes) must fail
with a clear reason instead of feeding mojibake to the model, so we look at two signals: NUL bytes
in the first 8 KiB, and the share of control characters in the decoded text.
"""

from __future__ import annotations

from dataclasses import dataclass

from charset_normalizer import from_bytes

_SNIFF_BYTES = 8192
_MAX_CONTROL_SHARE = 0.01
_ALLOWED_CONTROLS = {"\t", "\n", "\r", "\f", "\v"}
_PREFERRED = ("cp1252", "iso8859_15", "latin_1")
"""Western legacy encodings preferred when detection is nearly tied (as web browsers do)."""
_TIE_MARGIN = 0.15


class DecodeError(ValueError):
    """The bytes are not text in any encoding we can detect."""


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str
    detected: bool
    """True when UTF-8 failed and charset-normalizer chose the encoding."""


def looks_binary(raw: bytes) -> bool:
    return b"\x00" in raw[:_SNIFF_BYTES]


def _control_share(text: str) -> float:
    sample = text[:_SNIFF_BYTES]
    if not sample:
        return 0.0
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in _ALLOWED_CONTROLS)
    return controls / len(sample)


def _detect(raw: bytes):
    """charset-normalizer's best match, except that a near-tie goes to a western encoding.

    Short Latin-script texts fit several single-byte code pages almost equally well (cp1250,
    cp1257 and cp1252 differ only in a few letters); the detector's first pick then turns
    "très" into "trčs". Windows-1252 is by far the most common of them, so it wins near-ties.
    """
    matches = list(from_bytes(raw))
    if not matches:
        return None
    best_chaos = min(m.chaos for m in matches)
    for name in _PREFERRED:
        for match in matches:
            if match.encoding == name and match.chaos <= best_chaos + _TIE_MARGIN:
                return match
    return min(matches, key=lambda m: m.chaos)


def decode_bytes(raw: bytes) -> DecodedText:
    """Decode ``raw`` to text with normalised newlines, or raise ``DecodeError`` saying why not."""
    if looks_binary(raw):
        raise DecodeError("looks binary (NUL bytes in the first 8 KiB), not a text file")
    try:
        text = raw.decode("utf-8-sig")
        encoding, detected = "utf-8", False
    except UnicodeDecodeError as exc:
        best = _detect(raw)
        if best is None:
            raise DecodeError(f"not valid UTF-8 ({exc.reason} at byte {exc.start}) and no other encoding fits") from None
        text, encoding, detected = str(best), best.encoding, True
    if _control_share(text) > _MAX_CONTROL_SHARE:
        raise DecodeError(f"looks binary (too many control characters when decoded as {encoding})")
    return DecodedText(text=text.replace("\r\n", "\n").replace("\r", "\n"), encoding=encoding, detected=detected)
