"""Scrubbing Secret data out of API server messages before they are logged or printed (pure).

An admission webhook or a ValidatingAdmissionPolicy that refuses a write may quote the object it
refused: the new data (a blueprint's, which the operator knows) or the copy's old data (which the
operator never reads). Two defences, both applied to every message:

- *Known values.* No run of :data:`FRAGMENT` or more characters of any form of any blueprint value
  (base64, decoded, decoded as escaped inside a JSON or Go string) survives, wherever it starts
  or ends: a message quoting the first 120 characters of a value is caught like one quoting it
  whole. Shorter values (4 to 11 characters) are replaced where they appear whole.
- *Unknown values.* The part of a message a third party wrote (what follows ``denied the
  request:`` / ``denied request:``) loses every quoted string and every long token that is not a
  plain word; the server's own wording (``admission webhook "name" denied the request``, object
  names in ``secrets "x" already exists``) stays, since the API server never quotes Secret data.

Cost: a text is searched for in blocks of ``FRAGMENT // 2`` characters (every run of
``FRAGMENT`` characters contains one whole block that starts at a multiple of the block size), so
a message of n characters costs about n / 6 substring searches of each form; only blocks found
are looked at closer. Callers cut messages to a few hundred characters first.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable

#: The shortest run of a known value's characters that may not survive redaction.
FRAGMENT = 12
_BLOCK = FRAGMENT // 2
#: The shortest value replaced at all (where it appears whole): shorter ones are too common.
SHORTEST = 4
MARK = "[redacted]"

#: Where the part of a message that a webhook or an admission policy wrote begins.
_THIRD_PARTY = re.compile(r"denied (?:the )?request:")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', re.DOTALL)
_TOKEN = re.compile(r"[^\s\"'`]{16,}")
_PLAIN_WORD = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*[.,;:!?)]*")


def forms(value: str) -> list[str]:
    """The shapes a base64 data value can take inside a message: the base64 text, the decoded
    text, and the decoded text as escaped inside a JSON string (a PEM key's newlines become
    ``\\n``; Go's ``%q`` escapes these the same way), ASCII-only or not."""
    found = [value] if len(value) >= SHORTEST else []
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return found
    if len(decoded) >= SHORTEST:
        found += [decoded, json.dumps(decoded)[1:-1], json.dumps(decoded, ensure_ascii=False)[1:-1]]
    return list(dict.fromkeys(found))  # without repeats, in order


class Redactor:
    """Removes every fragment of a set of values from short texts; build one per set of values."""

    def __init__(self, values: Iterable[str]) -> None:
        every: dict[str, None] = {}
        for value in values:
            every.update(dict.fromkeys(forms(value)))
        self.long = [form for form in every if len(form) >= FRAGMENT]
        self.short = sorted((form for form in every if len(form) < FRAGMENT), key=len, reverse=True)

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
        for block in range(0, len(text) - _BLOCK + 1, _BLOCK):
            if block + FRAGMENT <= covered or not self._found(text[block : block + _BLOCK]):
                continue
            # Every window of FRAGMENT characters that holds this whole block.
            for start in range(max(0, block + _BLOCK - FRAGMENT), block + 1):
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


def drop_third_party_quotes(text: str) -> str:
    """Quoted strings and long tokens (other than plain words) replaced in the part of ``text``
    that a webhook or admission policy wrote, which may quote data the operator cannot know (a
    copy's old data, through ``oldObject``). The explanation's words stay."""
    found = _THIRD_PARTY.search(text)
    if found is None:
        return text
    head, tail = text[: found.end()], text[found.end() :]
    return head + _TOKEN.sub(_scrub_token, _QUOTED.sub(_scrub_quoted, tail))
