"""GNU getopt_long as glibc 2.36 implements it (permutation, abbreviations, messages).

QEMU's tools rely on glibc's exact behaviour: arguments are permuted so options
may follow operands, ``optind`` ends up pointing at the first operand, a
leading ``+`` stops at the first operand, a leading ``:`` silences glibc's own
messages and reports a missing argument as ``':'``.  The messages glibc prints
itself go to the current ``sys.stderr`` with ``prog`` as prefix.
"""
from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


class LongOpt:
    """One entry of a ``struct option`` table: has_arg is 0 (none) or 1 (required)."""

    __slots__ = ("name", "has_arg", "val")

    def __init__(self, name: str, has_arg: int, val: object) -> None:
        self.name = name
        self.has_arg = has_arg
        self.val = val


class Getopt:
    """Stateful scanner over ``argv`` (argv[0] is the program or command name)."""

    def __init__(self, argv: Sequence[str], optstring: str,
                 longopts: Sequence[LongOpt] = (), prog: str | None = None) -> None:
        self.argv = list(argv)
        self.prog = argv[0] if prog is None else prog
        self.longopts = list(longopts)
        self.require_order = optstring.startswith("+")
        if optstring[:1] in "+-" and optstring:
            optstring = optstring[1:]
        self.optstring = optstring
        self.colon = optstring.startswith(":")
        self.optind = 1
        self.optarg: str | None = None
        self.optopt: object = 0
        self._nextchar = ""
        self._first_nonopt = 1
        self._last_nonopt = 1

    # -- helpers ---------------------------------------------------------
    def _err(self, msg: str) -> None:
        if not self.colon:
            sys.stderr.write(f"{self.prog}: {msg}\n")
            sys.stderr.flush()

    def _nonoption(self, i: int) -> bool:
        a = self.argv[i]
        return not a.startswith("-") or a == "-"

    def _exchange(self) -> None:
        first, last, cur = self._first_nonopt, self._last_nonopt, self.optind
        self.argv[first:cur] = self.argv[last:cur] + self.argv[first:last]
        self._first_nonopt += cur - last
        self._last_nonopt = cur

    # -- scanning --------------------------------------------------------
    def next(self) -> object:
        """Return the next option character/value, or -1 at the end of options."""
        self.optarg = None
        argv, argc = self.argv, len(self.argv)
        if not self._nextchar:
            self._last_nonopt = min(self._last_nonopt, self.optind)
            self._first_nonopt = min(self._first_nonopt, self.optind)
            if not self.require_order:
                if self._first_nonopt != self._last_nonopt and self._last_nonopt != self.optind:
                    self._exchange()
                elif self._last_nonopt != self.optind:
                    self._first_nonopt = self.optind
                while self.optind < argc and self._nonoption(self.optind):
                    self.optind += 1
                self._last_nonopt = self.optind
            if self.optind != argc and argv[self.optind] == "--":
                self.optind += 1
                if self._first_nonopt != self._last_nonopt and self._last_nonopt != self.optind:
                    self._exchange()
                elif self._first_nonopt == self._last_nonopt:
                    self._first_nonopt = self.optind
                self._last_nonopt = argc
                self.optind = argc
            if self.optind == argc:
                if self._first_nonopt != self._last_nonopt:
                    self.optind = self._first_nonopt
                return -1
            if self._nonoption(self.optind):
                return -1  # only reachable with require_order
            if self.longopts and argv[self.optind][1] == "-":
                return self._long(argv[self.optind][2:])
            self._nextchar = argv[self.optind][1:]
        return self._short()

    def _short(self) -> object:
        c, self._nextchar = self._nextchar[0], self._nextchar[1:]
        if not self._nextchar:
            self.optind += 1
        pos = self.optstring.find(c)
        if pos < 0 or c in ":;":
            self._err(f"invalid option -- '{c}'")
            self.optopt = c
            return "?"
        if self.optstring[pos + 1:pos + 2] == ":":
            if self._nextchar:
                self.optarg = self._nextchar
                self.optind += 1
            elif self.optind == len(self.argv):
                self._err(f"option requires an argument -- '{c}'")
                self.optopt = c
                c = ":" if self.colon else "?"
            else:
                self.optarg = self.argv[self.optind]
                self.optind += 1
            self._nextchar = ""
        return c

    def _long(self, text: str) -> object:
        name, eq, value = text.partition("=")
        found = next((o for o in self.longopts if o.name == name), None)
        if found is None:
            matches = [o for o in self.longopts if o.name.startswith(name)]
            if matches:
                first = matches[0]
                differ = [o for o in matches[1:] if (o.has_arg, o.val) != (first.has_arg, first.val)]
                if differ:
                    names = " ".join(f"'--{o.name}'" for o in [first] + differ)
                    self._err(f"option '--{text}' is ambiguous; possibilities: {names}")
                    self.optind += 1
                    self.optopt = 0
                    return "?"
                found = first
        if found is None:
            self._err(f"unrecognized option '--{text}'")
            self.optind += 1
            self.optopt = 0
            return "?"
        self.optind += 1
        if eq:
            if not found.has_arg:
                self._err(f"option '--{found.name}' doesn't allow an argument")
                self.optopt = found.val
                return "?"
            self.optarg = value
        elif found.has_arg:
            if self.optind < len(self.argv):
                self.optarg = self.argv[self.optind]
                self.optind += 1
            else:
                self._err(f"option '--{found.name}' requires an argument")
                self.optopt = found.val
                return ":" if self.colon else "?"
        return found.val

    def __iter__(self):
        while True:
            c = self.next()
            if c == -1:
                return
            yield c
