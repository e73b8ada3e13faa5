"""Executing a case's images and steps on one backend, producing its log."""
from __future__ import annotations

import json
import shlex
import string
import sys
from typing import Any, Optional

from harness import filters as flt
from harness.backends.base import Backend, BackendError, Result
from harness.case import Case, ImageSpec, Step
from harness.errors import CaseError
from tools import inspect as insp

#: filters applied by default to ``qemu-img SUBCOMMAND`` output
IMG_DEFAULT_FILTERS = {"create": ["img_create"], "info": ["img_info"]}


class StepFailed(Exception):
    """A step could not be carried out (the backend failed); ends the case."""


class Executor:
    """Runs one case in ``test_dir`` and collects its filtered output."""

    def __init__(self, case: Case, backend: Backend, test_dir: str, imgfmt: str,
                 imgopts: str = "", cachemode: Optional[str] = None,
                 debug: bool = False) -> None:
        self.case = case
        self.backend = backend
        self.test_dir = test_dir
        self.imgfmt = imgfmt
        self.imgopts = imgopts
        self.cachemode = cachemode
        self.debug = debug
        self.ctx = flt.FilterContext(test_dir=test_dir, imgfmt=imgfmt, sock_dir=test_dir)
        self.out: list[str] = []
        self.vars = {"TEST_DIR": test_dir, "IMGFMT": imgfmt, "IMGOPTS": imgopts}
        for img in case.images:
            self.vars[img.name] = self.path(img)
        if any(i.name == "test" for i in case.images):
            self.vars["TEST_IMG"] = self.vars["test"]

    # --- helpers -----------------------------------------------------------
    def path(self, img: ImageSpec) -> str:
        return f"{self.test_dir}/{img.filename(self.imgfmt)}"

    def fmt(self, img: ImageSpec) -> str:
        return img.format or self.imgfmt

    def subst(self, text: str, line: int) -> str:
        try:
            return string.Template(text).substitute(self.vars)
        except KeyError as exc:
            raise CaseError(self.case.path, line, f"unknown variable ${exc.args[0]}") from None
        except ValueError as exc:
            raise CaseError(self.case.path, line, f"bad $-substitution: {exc}") from None

    def subst_obj(self, obj: Any, line: int) -> Any:
        if isinstance(obj, str):
            return self.subst(obj, line)
        if isinstance(obj, dict):
            return {k: self.subst_obj(v, line) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.subst_obj(v, line) for v in obj]
        return obj

    def split(self, text: str, line: int) -> list[str]:
        try:
            return shlex.split(self.subst(text, line))
        except ValueError as exc:
            raise CaseError(self.case.path, line, f"cannot split command: {exc}") from None

    def emit(self, text: str, names: list[str],
             step_filters: Optional[list[flt.Filter]] = None) -> None:
        extra = list(step_filters or []) + self.case.filters
        self.out.append(flt.apply(text, names, self.ctx, extra))

    def emit_result(self, res: Result, names: list[str], step: Optional[Step] = None) -> None:
        self.emit(res.output, names, step.options.get("filters") if step else None)
        if res.status:
            self.out.append(f"[exit status {res.status}]\n")

    def call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except BackendError as exc:
            raise StepFailed(str(exc)) from None
        except Exception as exc:  # timeouts, a QMP connection lost, a missing binary...
            raise StepFailed(f"{type(exc).__name__}: {exc}") from None

    def log_debug(self, argv: list[str]) -> None:
        if self.debug:
            print(f"+ [{self.backend.name}] {shlex.join(argv)}", file=sys.__stderr__)

    def img(self, argv: list[str]) -> Result:
        self.log_debug(["qemu-img"] + argv)
        return self.call(self.backend.qemu_img, argv)

    def io(self, img: ImageSpec, args: list[str], commands: list[str], session: bool) -> Result:
        argv = ["-f", self.fmt(img)]
        if self.cachemode:
            argv += ["-t", self.cachemode]
        argv += args + [self.path(img)]
        self.log_debug(["qemu-io"] + [a for c in commands for a in ("-c", c)] + argv)
        return self.call(self.backend.qemu_io, argv, commands, session=session)

    # --- images ------------------------------------------------------------
    def create(self, img: ImageSpec) -> None:
        fmt = self.fmt(img)
        own = self.subst(img.options, img.line) if img.options else ""
        opts = [o for o in ((self.imgopts if fmt == self.imgfmt else ""), own) if o]
        argv = ["create", "-f", fmt]
        if opts:
            argv += ["-o", ",".join(opts)]
        if img.backing:
            base = self.case.image(img.backing)
            argv += ["-b", self.path(base), "-F", img.backing_format or self.fmt(base)]
        argv += [self.path(img), self.subst(img.size, img.line)]
        self.emit_result(self.img(argv), ["img_create"])

    # --- steps -------------------------------------------------------------
    def run(self) -> str:
        """Create the images, run every step; return the filtered log."""
        self.out.append(f"QA output created by {self.case.id}\n")
        for img in self.case.images:
            self.create(img)
        for step in self.case.steps:
            getattr(self, f"step_{step.kind}")(step)
        return "".join(self.out)

    def step_echo(self, step: Step) -> None:
        self.out.append(f"{step.value}\n")

    def step_create(self, step: Step) -> None:
        self.create(self.case.image(step.value))

    def step_img(self, step: Step) -> None:
        value = step.value
        argv = self.split(value, step.line) if isinstance(value, str) else \
            [self.subst(str(a), step.line) for a in value]
        sub = argv[0] if argv else ""
        self.emit_result(self.img(argv), IMG_DEFAULT_FILTERS.get(sub, []), step)

    def step_io(self, step: Step) -> None:
        img = self.case.image(step.options.get("image", "test"))
        commands = [step.value] if isinstance(step.value, str) else list(step.value)
        commands = [self.subst(str(c), step.line) for c in commands]
        args = self.split(str(step.options.get("args", "")), step.line)
        session = bool(step.options.get("session", False))
        self.emit_result(self.io(img, args, commands, session), ["qemu_io"], step)
        if step.options.get("mirror"):
            if not img.mirror:
                raise CaseError(self.case.path, step.line, f"image '{img.name}' has no mirror")
            mirror = self.case.image(img.mirror)
            plain = [" ".join(w for w in shlex.split(c) if w != "-c") for c in commands]
            self.emit_result(self.io(mirror, [], plain, session), ["qemu_io"], step)

    def step_verify(self, step: Step) -> None:
        img = self.case.image(step.value)
        if not img.mirror:
            raise CaseError(self.case.path, step.line, f"image '{img.name}' has no mirror")
        mirror = self.case.image(img.mirror)
        res = self.img(["compare", self.path(img), self.path(mirror)])
        self.emit("".join(line + "\n" for line in res.output.splitlines()
                          if "Images are identical" not in line), [])
        res = self.img(["check", self.path(img)])
        text = flt.filter_qemu_img_check(res.output, self.ctx)
        self.emit("".join(line + "\n" for line in text.splitlines()
                          if "No errors were found on the image" not in line), [])

    def step_qmp(self, step: Step) -> None:
        """The command, what the machine printed meanwhile (HMP qemu-io), the
        reply, then the events that came with it (a job's until it concludes)."""
        machine = step.options.get("machine", "daemon")
        cmd = self.subst_obj(step.value, step.line)
        self.emit(json.dumps(cmd) + "\n", [])
        exchange = self.call(self.backend.qmp, machine, cmd)
        if exchange.output:
            self.emit(exchange.output, ["qemu_io"], step.options.get("filters"))
        lines = [exchange.reply] + exchange.events
        self.emit("".join(json.dumps(m) + "\n" for m in lines), ["qmp"],
                  step.options.get("filters"))

    def _image(self, step: Step, writable: bool = False) -> insp.Image:
        img = self.case.image(step.options.get("image", "test"))
        return insp.Image(self.path(img), writable=writable)

    def step_inspect(self, step: Step) -> None:
        (what, arg), = step.value.items()
        try:
            with self._image(step) as image:
                if what == "header":
                    fields = [] if arg in (None, "all") else \
                        ([arg] if isinstance(arg, str) else [str(a) for a in arg])
                    lines = insp.describe_header(image, fields)
                else:
                    fn = {"l1": insp.describe_l1, "l2": insp.describe_l2,
                          "refcount": insp.describe_refcount,
                          "refcount_host": insp.describe_refcount_host}[what]
                    lines = fn(image, insp.parse_offset(arg))
        except insp.InspectError as exc:
            lines = [f"inspect: {exc}"]
        self.emit("".join(line + "\n" for line in lines), [])

    def step_poke(self, step: Step) -> None:
        target = next(k for k in step.value if k in ("header", "l1", "l2", "l2_bitmap", "refcount"))
        op = next(k for k in step.value if k in ("set", "or", "clear"))
        try:
            operand = insp.parse_offset(step.value[op])
            with self._image(step, writable=True) as image:
                if target == "header":
                    field = str(step.value[target])
                    if field not in insp.HEADER_FIELDS:
                        raise insp.InspectError(f"unknown header field '{field}'")
                    image.set_header_field(field, _apply(op, getattr(image.header, field), operand))
                    return
                guest = insp.parse_offset(step.value[target])
                if target == "l1":
                    l1 = image.l1(guest)
                    image.poke_u64(l1.file_offset, _apply(op, l1.entry, operand))
                    return
                l2 = image.l2(guest)
                if target == "refcount":
                    if l2.host_offset is None:
                        raise insp.InspectError(f"no host cluster holds guest offset {guest}")
                    image.set_refcount(l2.host_offset,
                                       _apply(op, image.refcount(l2.host_offset), operand))
                    return
                if l2.file_offset is None:
                    raise insp.InspectError(f"no L2 table maps guest offset {guest}")
                if target == "l2":
                    image.poke_u64(l2.file_offset, _apply(op, l2.entry, operand))
                elif not l2.extended:
                    raise insp.InspectError("the image has no subcluster bitmaps")
                else:
                    image.poke_u64(l2.file_offset + 8, _apply(op, l2.bitmap, operand))
        except insp.InspectError as exc:
            self.out.append(f"poke: {exc}\n")


def _apply(op: str, old: int, operand: int) -> int:
    if op == "set":
        return operand
    if op == "or":
        return old | operand
    return old & ~operand
