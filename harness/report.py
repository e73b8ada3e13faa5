"""Printing results the way qemu-iotests does: result lines, summary, TAP, JUnit."""
from __future__ import annotations

import datetime
import sys
import xml.etree.ElementTree as ET
from typing import Optional, TextIO

from harness.runner import CaseResult

_COLORS = {"pass": "\033[32m", "fail": "\033[1m\033[31m", "not run": "\033[33m"}


def now() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S")


class Reporter:
    """Result lines and summary on ``out``."""

    def __init__(self, out: TextIO, imgfmt: str, width: int, color: bool, tap: bool) -> None:
        self.out = out
        self.imgfmt = imgfmt
        self.width = width
        self.color = color
        self.tap = tap

    def line(self, name: str, start: str, status: str = "...", end: Optional[str] = None,
             elapsed: Optional[float] = None, last: Optional[float] = None,
             description: str = "", term: str = "\n") -> None:
        """One qemu-iotests result line."""
        if self.tap:
            if status in _COLORS:
                word = {"pass": "ok", "fail": "not ok", "not run": "ok"}[status]
                skip = " # SKIP" if status == "not run" else ""
                self.out.write(f"{word} {self.imgfmt} {name}{skip}\n")
            return
        last_s = f" (last: {last:.1f}s)" if last else ""
        this_s = f"{elapsed:.1f}s" if elapsed else "..."
        end_s = f"[{end}]" if end else ""
        col, col_end = (_COLORS.get(status, ""), "\033[0m") if self.color else ("", "")
        text = (f"{name:{self.width}} {col}{status:10}{col_end} [{start}] {end_s:13}"
                f"{this_s:5} {last_s:14} {description}")
        self.out.write(text + term)
        self.out.flush()

    def diff(self, result: CaseResult) -> None:
        if result.diff:
            target = sys.stderr if self.tap else self.out
            target.write("\n".join(result.diff) + "\n")

    def summary(self, results: list[CaseResult]) -> None:
        if self.tap:
            return
        notrun = [r.name for r in results if r.status == "not run"]
        failed = [r.name for r in results if r.status == "fail"]
        n_run = len(results) - len(notrun)
        if notrun:
            self.out.write("Not run: " + " ".join(notrun) + "\n")
        if failed:
            self.out.write("Failures: " + " ".join(failed) + "\n")
            self.out.write(f"Failed {len(failed)} of {n_run} iotests\n")
        else:
            self.out.write(f"Passed all {n_run} iotests\n")
        self.out.flush()


def write_junit(path: str, results: list[CaseResult], suite: str) -> None:
    """A JUnit XML report of the run."""
    root = ET.Element("testsuite", name=suite, tests=str(len(results)),
                      failures=str(sum(r.status == "fail" for r in results)),
                      skipped=str(sum(r.status == "not run" for r in results)))
    for r in results:
        tc = ET.SubElement(root, "testcase", classname=suite, name=r.name,
                           time=f"{r.elapsed or 0:.1f}")
        if r.status == "fail":
            node = ET.SubElement(tc, "failure", message=r.description)
            node.text = "\n".join(r.diff)
        elif r.status == "not run":
            ET.SubElement(tc, "skipped", message=r.description)
    ET.ElementTree(root).write(path, encoding="unicode", xml_declaration=True)
