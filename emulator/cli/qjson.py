"""QEMU's JSON reader (qobject/json-lexer.c, json-streamer.c, json-parser.c, qjson.c).

``parse(text)`` returns the value as Python objects (dict, list, str, int,
float, bool, None) or raises ValueError with QEMU's message, e.g.
"JSON parse error, premature EOI" or "Expecting at most one JSON value".
Like QEMU it accepts single-quoted strings, reads keywords as runs of
lower-case letters, and splits the input into top-level messages, each
parsed on its own.
"""
from __future__ import annotations

_PUNCT = "{}[]:,"
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n",
            "r": "\r", "t": "\t"}


class _Stray(Exception):
    """A lexer error: the text of the token being read."""


def _string(text: str, i: int) -> tuple[str, int]:
    quote, out, j = text[i], [], i + 1
    while j < len(text):
        c = text[j]
        if c == quote:
            return "".join(out), j + 1
        if c == "\\":
            e = text[j + 1:j + 2]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                j += 2
                continue
            h = text[j + 2:j + 6]
            if e == "u" and len(h) == 4 and all(x in "0123456789abcdefABCDEF" for x in h):
                out.append(chr(int(h, 16)))
                j += 6
                continue
            raise _Stray(text[i:j + 2])
        if ord(c) < 0x20:
            raise _Stray(text[i:j + 1])
        out.append(c)
        j += 1
    raise _Stray(text[i:])


def _number(text: str, i: int) -> tuple[object, int]:
    j = i + (text[i] == "-")
    start = j
    while j < len(text) and text[j].isdigit():
        j += 1
    if j == start or (text[start] == "0" and j - start > 1):
        raise _Stray(text[i:j + 1])
    is_float = False
    if text[j:j + 1] == ".":
        k = j + 1
        while k < len(text) and text[k].isdigit():
            k += 1
        if k == j + 1:
            raise _Stray(text[i:k + 1])
        j, is_float = k, True
    if text[j:j + 1] in ("e", "E"):
        k = j + 1 + (text[j + 1:j + 2] in ("+", "-"))
        m = k
        while m < len(text) and text[m].isdigit():
            m += 1
        if m == k:
            raise _Stray(text[i:m + 1])
        j, is_float = m, True
    word = text[i:j]
    if not is_float:
        value = int(word)
        if -(1 << 63) <= value < (1 << 64):
            return value, j
    return float(word), j


def _tokens(text: str):
    """Yield (kind, value): kind is a punctuation character, 's', 'n', 'k' (keyword)."""
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c in _PUNCT:
            yield c, c
            i += 1
        elif c in "\"'":
            value, i = _string(text, i)
            yield "s", value
        elif c == "-" or c.isdigit():
            value, i = _number(text, i)
            yield "n", value
        elif "a" <= c <= "z":
            j = i
            while j < len(text) and "a" <= text[j] <= "z":
                j += 1
            yield "k", text[i:j]
            i = j
        else:
            raise _Stray(c)


class _Parser:
    def __init__(self, tokens: list) -> None:
        self.tokens, self.pos, self.err = tokens, 0, None

    def error(self, msg: str) -> None:
        if self.err is None:
            self.err = "JSON parse error, " + msg

    def pop(self):
        if self.pos >= len(self.tokens):
            return None
        self.pos += 1
        return self.tokens[self.pos - 1]

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def value(self):
        tok = self.peek()
        if tok is None:
            self.error("premature EOI")
            return None
        kind, v = tok
        if kind == "{":
            return self.obj()
        if kind == "[":
            return self.array()
        self.pop()
        if kind in ("s", "n"):
            return v
        if kind == "k":
            if v in ("true", "false", "null"):
                return {"true": True, "false": False, "null": _NULL}[v]
            self.error(f"invalid keyword '{v}'")
            return None
        self.error("expecting value")
        return None

    def pair(self, d: dict) -> bool:
        if self.peek() is None:
            self.error("premature EOI")
            return False
        key = self.value()
        if not isinstance(key, str):
            self.error("key is not a string in object")
            return False
        tok = self.pop()
        if tok is None:
            self.error("premature EOI")
            return False
        if tok[0] != ":":
            self.error("missing : in object pair")
            return False
        value = self.value()
        if value is None:
            self.error("Missing value in dict")
            return False
        if key in d:
            self.error("duplicate key")
            return False
        d[key] = value
        return True

    def obj(self):
        self.pop()
        d: dict = {}
        tok = self.peek()
        if tok is None:
            self.error("premature EOI")
            return None
        if tok[0] != "}":
            if not self.pair(d):
                return None
        tok = self.pop()
        if tok is None:
            self.error("premature EOI")
            return None
        while tok[0] != "}":
            if tok[0] != ",":
                self.error("expected separator in dict")
                return None
            if not self.pair(d):
                return None
            tok = self.pop()
            if tok is None:
                self.error("premature EOI")
                return None
        return d

    def array(self):
        self.pop()
        items: list = []
        tok = self.peek()
        if tok is None:
            self.error("premature EOI")
            return None
        if tok[0] != "]":
            v = self.value()
            if v is None:
                self.error("expecting value")
                return None
            items.append(v)
        tok = self.pop()
        if tok is None:
            self.error("premature EOI")
            return None
        while tok[0] != "]":
            if tok[0] != ",":
                self.error("expected separator in list")
                return None
            v = self.value()
            if v is None:
                self.error("expecting value")
                return None
            items.append(v)
            tok = self.pop()
            if tok is None:
                self.error("premature EOI")
                return None
        return items


class _Null:
    """JSON null while parsing (None means "no value" there)."""


_NULL = _Null()


def _unwrap(v: object) -> object:
    if v is _NULL:
        return None
    if isinstance(v, dict):
        return {k: _unwrap(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_unwrap(x) for x in v]
    return v


def _messages(text: str):
    """json_message_process_token: (tokens, None) per top-level message, or (None, error)."""
    depth_curly = depth_square = 0
    queue: list = []
    try:
        for tok in _tokens(text):
            queue.append(tok)
            depth_curly += (tok[0] == "{") - (tok[0] == "}")
            depth_square += (tok[0] == "[") - (tok[0] == "]")
            if (depth_curly > 0 or depth_square > 0) and depth_curly >= 0 \
                    and depth_square >= 0:
                continue
            yield queue, None
            queue, depth_curly, depth_square = [], 0, 0
    except _Stray as e:
        yield None, f"JSON parse error, stray '{e.args[0]}'"
        return
    if queue:
        yield queue, None


def parse(text: str) -> object:
    """qobject_from_json: one JSON value, or ValueError with QEMU's message."""
    result, err = None, None
    for tokens, error in _messages(text):
        if result is not None:
            result, err = None, "Expecting at most one JSON value"
        if err is not None:
            continue
        if error is None:
            p = _Parser(tokens)
            value = p.value()
            error = p.err
            if error is None:
                result = value
                continue
        err = error
    if err is not None:
        raise ValueError(err)
    if result is None:
        raise ValueError("Expecting a JSON value")
    return _unwrap(result)
