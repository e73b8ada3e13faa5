"""``./check -j N``: cases run by N forked worker processes, results as they finish.

Forked workers start in milliseconds and inherit every module the parent
imported (the emulator's command lines are imported once, before the fork).
Cases are handed out longest first (by the timing history), so that no long
case is left running alone at the end.
"""
from __future__ import annotations

import multiprocessing
import signal
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Iterator, Optional

from harness import report
from harness.runner import CaseResult, RunConfig, preload, run_case


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which lets the running cases finish."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(path: Path, config: RunConfig) -> CaseResult:
    start = report.now()
    result = run_case(path, config)
    result.start = start
    result.output = ""  # only the parent's report needs the result; keep the pipe light
    return result


def run_cases(paths: list[Path], config: RunConfig, jobs: int,
              last: Callable[[str], Optional[float]]) -> Iterator[CaseResult]:
    """Yield the result of every case as it finishes; ``last`` gives a case's
    previous duration (None when unknown: such cases go first)."""
    def duration(path: Path) -> float:
        seconds = last(path.stem)
        return float("inf") if seconds is None else seconds

    preload(config.impl)
    order = sorted(paths, key=duration, reverse=True)
    pool = ProcessPoolExecutor(jobs, multiprocessing.get_context("fork"),
                               initializer=_ignore_sigint)
    try:
        futures: dict[Future[CaseResult], Path] = {
            pool.submit(_run, path, config): path for path in order}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # a worker died: its cases cannot report
                yield CaseResult(futures[future].stem, "fail",
                                 f"worker process failed: {type(exc).__name__}: {exc}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
