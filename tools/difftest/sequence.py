"""Command sequences: what both sides run, and how it is printed."""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field

PROGRAMS = {"img": "qemu-img", "io": "qemu-io"}


@dataclass(frozen=True)
class Step:
    """One command line: ``tool`` is 'img' or 'io', ``argv`` excludes the program."""

    tool: str
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return shlex.join([PROGRAMS[self.tool], *self.argv])


@dataclass
class Sequence:
    """Setup steps (creating images and backing files) then steps on the top image."""

    steps: list[Step] = field(default_factory=list)
    top: str = "img.qcow2"
    top_fmt: str = "qcow2"
    label: str = ""

    def script(self) -> str:
        """The sequence as a shell script (run in an empty directory)."""
        return "\n".join(str(s) for s in self.steps)

    def __str__(self) -> str:
        head = f"# {self.label}\n" if self.label else ""
        return head + self.script()


def io_step(image: str, cmds: list[str], fmt: str | None = None) -> Step:
    """A qemu-io invocation running ``cmds`` on ``image``."""
    argv: list[str] = []
    if fmt:
        argv += ["-f", fmt]
    for c in cmds:
        argv += ["-c", c]
    argv.append(image)
    return Step("io", tuple(argv))


def img_step(*argv: str) -> Step:
    """A qemu-img invocation."""
    return Step("img", tuple(argv))


def parse_script(text: str, label: str = "") -> Sequence:
    """A sequence from shell-like lines ``qemu-img ...`` / ``qemu-io ...``.

    The top image is the last word of the last line (raw if it ends in .raw).
    """
    tools = {v: k for k, v in PROGRAMS.items()}
    steps = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            steps.append(Step(tools[words[0]], tuple(words[1:])))
    top = steps[-1].argv[-1]
    return Sequence(steps, top, "raw" if top.endswith(".raw") else "qcow2", label)
