"""Executing a case's images and steps on one backend, producing its log."""
from __future__ import annotations

import json
import shlex
import string
import sys
import time
from typing import Any, Optional

from harness import filters as flt
from harness.backends.base import Backend, BackendError, Result
from harness.case import Case, ImageSpec, Step, merge_objects
from harness.errors import CaseError
from tools import inspect as insp

#: filters applied by default to ``qemu-img SUBCOMMAND`` output
IMG_DEFAULT_FILTERS = {"create": ["img_create"], "info": ["img_info"]}
#: a step filter that stands in for a default filter (keeps what the default drops)
REPLACES_DEFAULT = {flt.filter_img_info_format_specific: "img_info"}
#: QEMU's PBKDF2 benchmark (LUKS key creation) fails now and then with this message
#: when a run is shorter than the CPU time clock's tick; such a command is run again
CPU_USAGE_FLAKE = "Unable to get accurate CPU usage"
#: tries, and the pause before a retry (failures come in runs on a loaded machine)
CPU_USAGE_TRIES = 20
CPU_USAGE_PAUSE = 0.2


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

    def object_args(self, step: Optional[Step] = None) -> list[str]:
        """``--object`` arguments: the case's objects, those of the step replacing
        the case's of the same id."""
        objects = self.case.objects
        line = step.line if step else 1
        if step and step.options.get("objects"):
            objects = merge_objects(objects, step.options["objects"])
        return [a for o in objects for a in ("--object", self.subst(o, line))]

    def image_spec(self, img: ImageSpec, extra: str) -> str:
        """The ``--image-opts`` argument opening ``img`` with ``extra`` options."""
        spec = f"driver={self.fmt(img)},file.filename={self.path(img)}"
        return f"{spec},{self.subst(extra, img.line)}" if extra else spec

    def img(self, argv: list[str], objects: Optional[list[str]] = None) -> Result:
        if objects and argv and not argv[0].startswith("-"):
            argv = argv[:1] + objects + argv[1:]
        self.log_debug(["qemu-img"] + argv)
        for _ in range(CPU_USAGE_TRIES):
            res = self.call(self.backend.qemu_img, argv)
            if CPU_USAGE_FLAKE not in res.output:
                break
            self.log_debug(["# again: " + CPU_USAGE_FLAKE])
            time.sleep(CPU_USAGE_PAUSE)
        return res

    def io(self, img: ImageSpec, args: list[str], commands: list[str], session: bool,
           objects: Optional[list[str]] = None, image_opts: Optional[str] = None) -> Result:
        argv = list(objects or [])
        if image_opts is None:
            argv += ["-f", self.fmt(img)]
        if self.cachemode:
            argv += ["-t", self.cachemode]
        argv += args
        argv += ["--image-opts", self.image_spec(img, image_opts)] if image_opts is not None \
            else [self.path(img)]
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
        self.emit_result(self.img(argv, self.object_args()), ["img_create"])

    # --- steps -------------------------------------------------------------
    def run(self) -> str:
        """Create the images, run every step; return the filtered log."""
        self.out.append(f"QA output created by {self.case.id}\n")
        for name, text in self.case.files.items():
            with open(f"{self.test_dir}/{name}", "w", encoding="utf-8") as f:
                f.write(self.subst(text, 1))
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
        names = IMG_DEFAULT_FILTERS.get(sub, [])
        replaced = {REPLACES_DEFAULT.get(f) for f in step.options.get("filters", [])}
        self.emit_result(self.img(argv, self.object_args(step)),
                         [n for n in names if n not in replaced], step)

    def step_io(self, step: Step) -> None:
        img = self.case.image(step.options.get("image", "test"))
        commands = [step.value] if isinstance(step.value, str) else list(step.value)
        commands = [self.subst(str(c), step.line) for c in commands]
        args = self.split(str(step.options.get("args", "")), step.line)
        session = bool(step.options.get("session", False))
        image_opts = step.options.get("image_opts", img.image_opts)
        self.emit_result(self.io(img, args, commands, session, self.object_args(step),
                                 image_opts), ["qemu_io"], step)
        if step.options.get("mirror"):
            if not img.mirror:
                raise CaseError(self.case.path, step.line, f"image '{img.name}' has no mirror")
            mirror = self.case.image(img.mirror)
            plain = [" ".join(w for w in shlex.split(c) if w != "-c") for c in commands]
            self.emit_result(self.io(mirror, [], plain, session, self.object_args(step),
                                     mirror.image_opts), ["qemu_io"], step)

    def step_verify(self, step: Step) -> None:
        img = self.case.image(step.value)
        if not img.mirror:
            raise CaseError(self.case.path, step.line, f"image '{img.name}' has no mirror")
        mirror = self.case.image(img.mirror)
        objects = self.object_args(step)
        if img.image_opts is None and mirror.image_opts is None:
            names = [self.path(img), self.path(mirror)]
        else:
            names = ["--image-opts", self.image_spec(img, img.image_opts or ""),
                     self.image_spec(mirror, mirror.image_opts or "")]
        res = self.img(["compare"] + names, objects)
        self.emit("".join(line + "\n" for line in res.output.splitlines()
                          if "Images are identical" not in line), [])
        target = [self.path(img)] if img.image_opts is None else \
            ["--image-opts", self.image_spec(img, img.image_opts)]
        res = self.img(["check"] + target, objects)
        text = flt.filter_qemu_img_check(res.output, self.ctx)
        self.emit("".join(line + "\n" for line in text.splitlines()
                          if "No errors were found on the image" not in line), [])

    def step_qmp(self, step: Step) -> None:
        """The command, what the machine printed meanwhile (HMP qemu-io), the
        reply, then the events that came with it (a job's until it concludes)."""
        machine = step.options.get("machine", "daemon")
        cmd = self.subst_obj(step.value, step.line)
        self.emit(json.dumps(cmd) + "\n", [])
        for attempt in range(CPU_USAGE_TRIES):
            exchange = self.call(self.backend.qmp, machine, cmd)
            if attempt == CPU_USAGE_TRIES - 1 or not self.job_flaked(machine, cmd, exchange):
                break
            self.log_debug(["# again: " + CPU_USAGE_FLAKE])
            time.sleep(CPU_USAGE_PAUSE)
        if exchange.output:
            self.emit(exchange.output, ["qemu_io"], step.options.get("filters"))
        lines = [exchange.reply] + exchange.events
        self.emit("".join(json.dumps(m) + "\n" for m in lines), ["qmp"],
                  step.options.get("filters"))

    def job_flaked(self, machine: str, cmd: dict[str, Any], exchange: Any) -> bool:
        """Whether ``cmd`` started a job that failed in QEMU's PBKDF2 benchmark
        (see CPU_USAGE_FLAKE); such a job is dismissed, unseen, to be run again."""
        job_id = (cmd.get("arguments") or {}).get("job-id") if isinstance(cmd, dict) else None
        if not job_id or not any((e.get("data") or {}).get("status") == "aborting"
                                 for e in exchange.events):
            return False
        jobs = self.call(self.backend.qmp, machine, {"execute": "query-jobs"}).reply
        if not any(j.get("id") == job_id and CPU_USAGE_FLAKE in j.get("error", "")
                   for j in jobs.get("return", [])):
            return False
        self.call(self.backend.qmp, machine, {"execute": "job-dismiss",
                                              "arguments": {"id": job_id}})
        return True

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
