"""Case files: loading and validating ``cases/*.yaml`` into a :class:`Case`.

Every problem is raised as :class:`CaseError` naming the file and the line.
The format is documented in cases/README.md.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness import filters as flt
from harness.errors import CaseError
from harness.yamlload import LDict, line_of, load

TOP_KEYS = {"description", "groups", "requires", "objects", "files", "images", "filters",
            "steps"}
REQUIRE_KEYS = {"formats", "unsupported_imgopts", "impl"}
IMAGE_KEYS = {"name", "format", "size", "backing", "backing_format", "options", "mirror", "file",
              "image_opts"}
IMPLS = ("emulator", "qemu")

#: step kind -> option keys allowed beside the kind key
STEP_OPTIONS: dict[str, set[str]] = {
    "echo": set(),
    "img": {"objects", "filters"},
    "io": {"image", "args", "objects", "image_opts", "mirror", "session", "filters"},
    "create": set(),
    "qmp": {"machine", "filters"},
    "inspect": {"image"},
    "poke": {"image"},
    "verify": set(),
}
INSPECT_KEYS = {"header", "l1", "l2", "refcount", "refcount_host"}
POKE_TARGETS = {"header", "l1", "l2", "l2_bitmap", "refcount"}
POKE_OPS = {"set", "or", "clear"}
QMP_MACHINES = ("daemon", "system")


@dataclass
class ImageSpec:
    """An image a case creates (``format`` None means the run's IMGFMT)."""

    name: str
    size: str
    format: Optional[str] = None
    backing: Optional[str] = None
    backing_format: Optional[str] = None
    options: str = ""
    mirror: Optional[str] = None
    file: Optional[str] = None
    #: options after ``driver=FMT,file.filename=PATH`` when opened with --image-opts
    image_opts: Optional[str] = None
    line: int = 1

    def filename(self, imgfmt: str) -> str:
        if self.file:
            return self.file
        return f"t.{imgfmt}" if self.name == "test" else f"t.{imgfmt}.{self.name}"


@dataclass
class Step:
    """One step: its kind, the kind's value, its options and its line."""

    kind: str
    value: Any
    options: dict[str, Any]
    line: int


@dataclass
class Case:
    """A loaded, validated case."""

    id: str
    path: str
    description: str
    groups: list[str]
    formats: list[str]
    unsupported_imgopts: list[str]
    impls: list[str]
    images: list[ImageSpec]
    filters: list[flt.Filter]
    steps: list[Step]
    qmp_machines: list[str] = field(default_factory=list)
    #: ``--object`` arguments given to every qemu-img / qemu-io call
    objects: list[str] = field(default_factory=list)
    #: files written into the scratch directory first: name -> text
    files: dict[str, str] = field(default_factory=dict)

    def image(self, name: str) -> ImageSpec:
        for img in self.images:
            if img.name == name:
                return img
        raise KeyError(name)


def _str_list(value: Any, path: str, line: int, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        return [str(v) for v in value]
    raise CaseError(path, line, f"{what} must be a string or a list of strings")


def _check_keys(obj: LDict, allowed: set[str], path: str, what: str) -> None:
    for key in obj:
        if key not in allowed:
            raise CaseError(path, line_of(obj), f"unknown key '{key}' in {what} "
                            f"(allowed: {', '.join(sorted(allowed))})")


def _parse_images(raw: Any, path: str) -> list[ImageSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise CaseError(path, line_of(raw), "'images' must be a list")
    images: list[ImageSpec] = []
    for item in raw:
        line = line_of(item, line_of(raw))
        if not isinstance(item, dict):
            raise CaseError(path, line, "each image must be a mapping")
        _check_keys(item, IMAGE_KEYS, path, "image")
        name = item.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise CaseError(path, line, "image needs a 'name' made of letters, digits and _")
        if "size" not in item:
            raise CaseError(path, line, f"image '{name}' needs a 'size'")
        opts = item.get("options", "")
        if isinstance(opts, dict):
            opts = ",".join(f"{k}={v}" for k, v in opts.items())
        img = ImageSpec(name=name, size=str(item["size"]), format=item.get("format"),
                        backing=item.get("backing"), backing_format=item.get("backing_format"),
                        options=str(opts), mirror=item.get("mirror"), file=item.get("file"),
                        image_opts=_image_opts(item.get("image_opts"), path, line), line=line)
        if any(i.name == name for i in images):
            raise CaseError(path, line, f"duplicate image name '{name}'")
        if img.backing and not any(i.name == img.backing for i in images):
            raise CaseError(path, line, f"backing image '{img.backing}' must be declared before '{name}'")
        images.append(img)
    names = {i.name for i in images}
    for img in images:
        if img.mirror and img.mirror not in names:
            raise CaseError(path, img.line, f"mirror image '{img.mirror}' is not declared")
    return images


def _image_opts(value: Any, path: str, line: int) -> Optional[str]:
    """``image_opts``: a string or mapping, ``true`` (no options beyond driver and
    file name) or ``false`` (None: open with ``-f FMT FILE``)."""
    if value is None or value is False:
        return None
    if value is True:
        return ""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, str):
        return value
    raise CaseError(path, line, "'image_opts' must be a string, a mapping, true or false")


def _object_arg(item: Any, path: str, line: int) -> str:
    """One ``objects`` entry as the argument of ``--object``."""
    if isinstance(item, str) and item and not item.startswith("-"):
        if "=" in item.split(",", 1)[0]:
            raise CaseError(path, line, f"object '{item}' has no type (in a [...] list, "
                            "quote each object: commas separate the items)")
        return item
    if isinstance(item, dict):
        qom_type = item.get("qom-type")
        if not isinstance(qom_type, str) or not qom_type:
            raise CaseError(path, line, "an object mapping needs a 'qom-type' string")
        props = []
        for key, value in item.items():
            if key == "qom-type":
                continue
            if not isinstance(value, (str, int, float, bool)):
                raise CaseError(path, line, f"object property '{key}' must be a scalar")
            if isinstance(value, bool):
                value = "on" if value else "off"
            props.append(f"{key}={str(value).replace(',', ',,')}")
        return ",".join([qom_type] + props)
    raise CaseError(path, line, "an object is a string like 'secret,id=sec0,data=pw' "
                    "or a mapping with 'qom-type'")


def parse_objects(raw: Any, path: str, line: int) -> list[str]:
    """An ``objects`` list (of the case or of a step) as ``--object`` arguments."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise CaseError(path, line_of(raw, line), "'objects' must be a list")
    return [_object_arg(item, path, line_of(item, line_of(raw, line))) for item in raw]


def object_id(arg: str) -> Optional[str]:
    """The ``id`` property of an ``--object`` argument, if it has one."""
    for prop in arg.replace(",,", "\x00").split(",")[1:]:
        key, sep, value = prop.partition("=")
        if sep and key == "id":
            return value.replace("\x00", ",")
    return None


def merge_objects(base: list[str], override: list[str]) -> list[str]:
    """``base`` with each object replaced in place by the object of ``override``
    that has the same id, followed by the other objects of ``override``."""
    replace = {object_id(o): o for o in override if object_id(o) is not None}
    merged = [replace.pop(object_id(o)) if object_id(o) in replace else o for o in base]
    return merged + [o for o in override
                     if object_id(o) is None or object_id(o) in replace]


def _parse_files(raw: Any, path: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CaseError(path, line_of(raw), "'files' must be a mapping of file name to text")
    files = {}
    for name, text in raw.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
            raise CaseError(path, line_of(raw), f"bad file name '{name}' in 'files' "
                            "(letters, digits, '_', '.', '-'; no directories)")
        if not isinstance(text, (str, int, float)):
            raise CaseError(path, line_of(raw), f"file '{name}' needs a text")
        files[name] = str(text)
    return files


def _parse_filters(raw: Any, path: str) -> list[flt.Filter]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise CaseError(path, line_of(raw), "'filters' must be a list")
    out: list[flt.Filter] = []
    for item in raw:
        line = line_of(item, line_of(raw))
        if isinstance(item, str):
            if item not in flt.FILTERS:
                raise CaseError(path, line, f"unknown filter '{item}'")
            out.append(flt.FILTERS[item])
        elif (isinstance(item, list) and len(item) == 2
              and all(isinstance(v, str) for v in item)):
            try:
                out.append(flt.regex_filter(item[0], item[1]))
            except re.error as exc:
                raise CaseError(path, line, f"bad filter regex: {exc}") from None
        else:
            raise CaseError(path, line, "a filter is a name or a [regex, replacement] pair")
    return out


def _validate_step(step: Step, path: str, images: set[str]) -> None:
    kind, value, opts, line = step.kind, step.value, step.options, step.line
    if "filters" in opts:
        if not isinstance(opts["filters"], list):
            raise CaseError(path, line, "'filters' must be a list")
        opts["filters"] = _parse_filters(opts["filters"], path)
    if "objects" in opts:
        opts["objects"] = parse_objects(opts["objects"], path, line)
    if "image_opts" in opts:
        opts["image_opts"] = _image_opts(opts["image_opts"], path, line)
    for key in ("image",):
        if key in opts and opts[key] not in images:
            raise CaseError(path, line, f"unknown image '{opts[key]}'")
    if kind in ("echo",):
        if not isinstance(value, (str, int, float)):
            raise CaseError(path, line, "echo needs a string")
    elif kind in ("img", "io"):
        _str_list(value, path, line, kind)
    elif kind in ("create", "verify"):
        if value not in images:
            raise CaseError(path, line, f"unknown image '{value}'")
    elif kind == "qmp":
        if not isinstance(value, dict) or "execute" not in value:
            raise CaseError(path, line, "qmp needs a mapping with 'execute'")
        if opts.get("machine", "daemon") not in QMP_MACHINES:
            raise CaseError(path, line, f"machine must be one of {', '.join(QMP_MACHINES)}")
    elif kind == "inspect":
        if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in INSPECT_KEYS:
            raise CaseError(path, line, "inspect needs exactly one of "
                            f"{', '.join(sorted(INSPECT_KEYS))}")
    elif kind == "poke":
        if not isinstance(value, dict):
            raise CaseError(path, line, "poke needs a mapping")
        targets = [k for k in value if k in POKE_TARGETS]
        ops = [k for k in value if k in POKE_OPS]
        if len(targets) != 1 or len(ops) != 1 or len(value) != 2:
            raise CaseError(path, line, "poke needs one target "
                            f"({', '.join(sorted(POKE_TARGETS))}) and one operation "
                            f"({', '.join(sorted(POKE_OPS))})")


def _parse_steps(raw: Any, path: str, images: set[str]) -> list[Step]:
    if not isinstance(raw, list) or not raw:
        raise CaseError(path, line_of(raw), "'steps' must be a non-empty list")
    steps = []
    for item in raw:
        line = line_of(item, line_of(raw))
        if not isinstance(item, dict):
            raise CaseError(path, line, "each step must be a mapping")
        kinds = [k for k in item if k in STEP_OPTIONS]
        if len(kinds) != 1:
            unknown = [k for k in item if k not in set().union(*STEP_OPTIONS.values())]
            what = f"unknown step '{unknown[0]}'" if unknown else "a step needs exactly one kind"
            raise CaseError(path, line, f"{what} (kinds: {', '.join(STEP_OPTIONS)})")
        kind = kinds[0]
        opts = {k: v for k, v in item.items() if k != kind}
        for key in opts:
            if key not in STEP_OPTIONS[kind]:
                raise CaseError(path, line, f"unknown option '{key}' for step '{kind}'")
        step = Step(kind, item[kind], opts, line)
        _validate_step(step, path, images)
        steps.append(step)
    return steps


def case_id(path: Path) -> str:
    return path.stem


#: (path as given, mtime, size) -> Case: selecting by group and running load a case once
_loaded: dict[tuple[str, int, int], Case] = {}


def load_case(path: Path) -> Case:
    """Load and validate one case file; every problem is a CaseError."""
    try:
        st = path.stat()
    except OSError:  # reported by _load_case
        st = None
    key = (str(path), st.st_mtime_ns, st.st_size) if st else None
    cached = _loaded.get(key) if key else None
    if cached is not None:
        return cached
    try:
        case = _load_case(path)
    except CaseError:
        raise
    except Exception as exc:  # a shape of YAML the checks above did not foresee
        raise CaseError(str(path), 1, f"cannot load case: {type(exc).__name__}: {exc}") from None
    if key is not None:
        _loaded[key] = case
    return case


def _load_case(path: Path) -> Case:
    spath = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseError(spath, 1, f"cannot read case: {exc}") from None
    data = load(text, spath)
    if not isinstance(data, dict):
        raise CaseError(spath, 1, "a case must be a YAML mapping")
    _check_keys(data, TOP_KEYS, spath, "case")
    if not isinstance(data.get("description"), str):
        raise CaseError(spath, line_of(data), "a case needs a 'description' string")
    req = data.get("requires") or LDict()
    if not isinstance(req, dict):
        raise CaseError(spath, line_of(data), "'requires' must be a mapping")
    _check_keys(req, REQUIRE_KEYS, spath, "requires")
    rline = line_of(req, line_of(data))
    impls = _str_list(req.get("impl", list(IMPLS)), spath, rline, "requires.impl")
    for impl in impls:
        if impl not in IMPLS:
            raise CaseError(spath, rline, f"unknown implementation '{impl}'")
    images = _parse_images(data.get("images"), spath)
    steps = _parse_steps(data.get("steps"), spath, {i.name for i in images})
    machines = sorted({s.options.get("machine", "daemon") for s in steps if s.kind == "qmp"})
    return Case(
        id=case_id(path), path=spath, description=data["description"],
        groups=_str_list(data.get("groups", []), spath, line_of(data), "groups"),
        formats=_str_list(req.get("formats", ["qcow2", "raw"]), spath, rline, "requires.formats"),
        unsupported_imgopts=_str_list(req.get("unsupported_imgopts", []), spath, rline,
                                      "requires.unsupported_imgopts"),
        impls=impls, images=images, filters=_parse_filters(data.get("filters"), spath),
        steps=steps, qmp_machines=machines,
        objects=parse_objects(data.get("objects"), spath, line_of(data)),
        files=_parse_files(data.get("files"), spath))
