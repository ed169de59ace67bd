"""Scrubbing Secret data out of API server messages before they are logged or printed (pure).

An admission webhook or a ValidatingAdmissionPolicy that refuses a write may quote the object it
refused: the new data (a blueprint's, which the operator knows) or the copy's old data (which the
operator never reads). Three defences, all applied to every message:

- *What the API server echoes.* kube-apiserver's own wording never carries Secret data except
  where it quotes the request: field errors print the refused value (``Invalid value: "..."``,
  ``Unsupported value``, ``Duplicate value``, ``Not found``; ``[]byte{...}`` for bytes), and JSON
  syntax errors quote a character (``invalid character 'x'``). Those values are dropped whatever
  they are, known or not, however short.
- *Known values.* No run of :data:`FRAGMENT` or more characters of any form of any blueprint value
  (base64, decoded, decoded as escaped inside a JSON string, HTML-safe as Go's encoding/json
  writes it, or as Go's ``%q``) survives, wherever it starts or ends: a message quoting the first
  120 characters of a value is caught like one quoting it whole. Shorter values (4 to 11
  characters) are replaced where they appear whole; values of 1 to 3 characters where they stand
  alone as a word in a third party's text (anywhere else they would erase the server's wording).
- *Unknown values.* The part of a message a third party wrote (what follows ``denied the
  request:`` / ``denied request:``) loses every quoted string (also one cut short by the end of
  the text) and every long token that is not a plain word; the server's own wording (``admission
  webhook "name" denied the request``, object names in ``secrets "x" already exists``) stays.

What remains possible: a webhook writing a copy's old data (unknown here) unquoted, as plain words.

Cost: every run of ``FRAGMENT`` characters of a form holds one of the form's blocks of
``FRAGMENT // 2`` characters that start at a multiple of the block size. The hashes of those
blocks are computed once per set of values (about 0.3 s and 3 MB for a 1 MiB value), so a
message costs one lookup per character; only where a block is found is the text searched for in
the forms themselves. Measured for a 500-character message against a 1 MiB value: 0.5 ms for a
clean text (87 ms when every block was searched for in every form), 8 ms for one quoting two
200-character runs (20 ms before).
"""

from __future__ import annotations

import base64
import bisect
import json
import re
from array import array
from collections.abc import Iterable

#: The shortest run of a known value's characters that may not survive redaction.
FRAGMENT = 12
_BLOCK = FRAGMENT // 2
#: The shortest value replaced at all (where it appears whole): shorter ones are too common.
SHORTEST = 4
MARK = "[redacted]"

#: Where the part of a message that a webhook or an admission policy wrote begins.
_THIRD_PARTY = re.compile(r"denied (?:the )?request:")
# A quote cut short (messages are cut before they are logged) runs to the end of the text.
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|\'(?:[^\'\\]|\\.)*(?:\'|\\?\Z)|`[^`]*`?', re.DOTALL)
#: Where kube-apiserver itself echoes part of a request: field errors print the refused value
#: (k8s.io/apimachinery's field.Error: ``Invalid value: %q``, ``%#v`` for a byte slice), and
#: encoding/json's syntax errors quote a character of the input.
_ECHOED = re.compile(
    r"((?:Invalid|Unsupported|Duplicate) value|Not found): "
    r'(?:"(?:[^"\\]|\\.)*(?:"|\\?\Z)|\[\]byte\{[^}]*\}?)',
    re.DOTALL,
)
_JSON_CHARACTER = re.compile(r"(invalid character )'(?:[^'\\]|\\.)*(?:'|\\?\Z)")
_TOKEN = re.compile(r"[^\s\"'`]{16,}")
_PLAIN_WORD = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*[.,;:!?)]*")


_GO_SHORT_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_json(text: str) -> str:
    """``text`` inside a string as Go's encoding/json writes it: HTML-safe (``&`` ``<`` ``>`` as
    ``\\u0026`` ``\\u003c`` ``\\u003e``, and U+2028/U+2029 escaped), other non-ASCII as is."""
    escaped = json.dumps(text, ensure_ascii=False)[1:-1]
    for char, code in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        escaped = escaped.replace(char, code)
    return escaped.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _go_escape(char: str) -> str:
    code = ord(char)
    if char in _GO_SHORT_ESCAPES:
        return _GO_SHORT_ESCAPES[char]
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


_GO_ASCII = {code: _go_escape(chr(code)) for code in [*range(0x20), 0x7F]} | {
    ord('"'): '\\"',
    ord("\\"): "\\\\",
}
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def go_quote(text: str) -> str:
    """``text`` as Go's ``%q`` (strconv.Quote) writes it, without the quotes: what
    kube-apiserver's field errors print (``Invalid value: "..."``)."""
    escaped = text.translate(_GO_ASCII)
    if escaped.isascii():
        return escaped
    return _NON_ASCII.sub(lambda m: m.group() if m.group().isprintable() else _go_escape(m.group()), escaped)


def forms(value: str) -> list[str]:
    """The shapes a base64 data value can take inside a message: the base64 text, the decoded
    text, and the decoded text as escaped inside a JSON string (a PEM key's newlines become
    ``\\n``), ASCII-only or not, HTML-safe as Go's encoding/json writes it, and as Go's ``%q``."""
    found = [value] if len(value) >= 1 else []
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return found
    if decoded:
        found += [
            decoded,
            json.dumps(decoded)[1:-1],
            json.dumps(decoded, ensure_ascii=False)[1:-1],
            go_json(decoded),
            go_quote(decoded),
        ]
    return list(dict.fromkeys(found))  # without repeats, in order


class Redactor:
    """Removes every fragment of a set of values from short texts; build one per set of values."""

    def __init__(self, values: Iterable[str]) -> None:
        every: dict[str, None] = {}
        for value in values:
            every.update(dict.fromkeys(forms(value)))
        self.long = [form for form in every if len(form) >= FRAGMENT]
        short = sorted((form for form in every if len(form) < FRAGMENT), key=len, reverse=True)
        self.short = [form for form in short if len(form) >= SHORTEST]
        #: Values too short to search for anywhere (1 to 3 characters): replaced only where they
        #: stand alone as a word in what a third party wrote (see ``drop_third_party_quotes``).
        self.tiny = [form for form in short if len(form) < SHORTEST]
        # Every run of FRAGMENT characters of a form holds one of the form's blocks that start at
        # a multiple of _BLOCK: their hashes, sorted, decide cheaply where a text may hold a run
        # (one lookup per offset instead of a search through every form per block). For a 1 MiB
        # value, about 1.3 bytes per form character.
        hashes = {
            hash(form[i : i + _BLOCK]) for form in self.long for i in range(0, len(form) - _BLOCK + 1, _BLOCK)
        }
        self._blocks = array("q", sorted(hashes))

    def _may_start_run(self, block: str) -> bool:
        found = hash(block)
        at = bisect.bisect_left(self._blocks, found)
        return at < len(self._blocks) and self._blocks[at] == found

    def _found(self, piece: str) -> bool:
        return any(piece in form for form in self.long)

    def _longest_from(self, text: str, start: int, known: int) -> int:
        """The end of the longest run from ``start`` found in a form (``text[start:known]`` is)."""
        low, step = known, FRAGMENT
        high = len(text) + 1
        while low + step < high:  # gallop: runs are usually either short or the whole quote
            if self._found(text[start : low + step]):
                low, step = low + step, step * 2
            else:
                high = low + step
                break
        while high - low > 1:  # invariant: text[start:low] found, text[start:high] not (or past the end)
            middle = (low + high) // 2
            if self._found(text[start:middle]):
                low = middle
            else:
                high = middle
        return low

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Sorted, disjoint (start, end) runs of ``text`` of FRAGMENT or more characters that
        occur in a form of a value; no such run of ``text`` lies outside them."""
        found: list[tuple[int, int]] = []
        covered = 0  # text[:covered] needs no more looking at
        for block in range(len(text) - _BLOCK + 1):
            if block + FRAGMENT <= covered or not self._may_start_run(text[block : block + _BLOCK]):
                continue
            # Every window of FRAGMENT characters in which this is the form's aligned block.
            for start in range(max(0, block - _BLOCK + 1), block + 1):
                end = start + FRAGMENT
                if end > len(text) or end <= covered:
                    continue
                if self._found(text[start:end]):
                    end = self._longest_from(text, start, end)
                    found.append((start, end))
                    covered = max(covered, end)
        merged: list[tuple[int, int]] = []
        for start, end in sorted(found):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    def redact_message(self, text: str) -> str:
        """A server's message without what it echoes of a request (structurally, whatever it is),
        without what a third party quoted, and without any fragment of a known value."""
        return self.redact(drop_third_party_quotes(drop_echoes(text), tiny=self.tiny))

    def redact(self, text: str) -> str:
        """``text`` without any run of FRAGMENT or more characters of a value, nor a short value."""
        if self.long:
            pieces, last = [], 0
            for start, end in self.spans(text):
                pieces += [text[last:start], MARK]
                last = end
            text = "".join([*pieces, text[last:]])
        for form in self.short:
            text = text.replace(form, MARK)
        return text


def _scrub_quoted(match: re.Match[str]) -> str:
    quote = match.group(0)[0]
    return f"{quote}{MARK}{quote}" if len(match.group(0)) > 2 else match.group(0)


def _scrub_token(match: re.Match[str]) -> str:
    return match.group(0) if _PLAIN_WORD.fullmatch(match.group(0)) else MARK


def drop_echoes(text: str) -> str:
    """The values kube-apiserver's own messages quote from the request, replaced whatever they
    are (a copy's old data is unknown; a value of 3 characters cannot be searched for)."""
    return _JSON_CHARACTER.sub(rf"\1{MARK}", _ECHOED.sub(rf"\1: {MARK}", text))


def drop_third_party_quotes(text: str, *, tiny: Iterable[str] = ()) -> str:
    """Quoted strings and long tokens (other than plain words) replaced in the part of ``text``
    that a webhook or admission policy wrote, which may quote data the operator cannot know (a
    copy's old data, through ``oldObject``); so are the ``tiny`` values (too short to search for
    anywhere) where they stand alone. The explanation's other words stay."""
    found = _THIRD_PARTY.search(text)
    if found is None:
        return text
    head, tail = text[: found.end()], text[found.end() :]
    tail = _TOKEN.sub(_scrub_token, _QUOTED.sub(_scrub_quoted, tail))
    for value in tiny:
        tail = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", MARK, tail)
    return head + tail
