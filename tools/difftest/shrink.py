"""Shrink a diverging sequence to a shorter one that still diverges."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from .sequence import Sequence, Step


def _without_command(step: Step, k: int) -> Step | None:
    """``step`` with its k-th ``-c`` command removed (None if it has no such command)."""
    idx = [i for i, a in enumerate(step.argv) if a == "-c"]
    if step.tool != "io" or k >= len(idx) or len(idx) == 1:
        return None
    i = idx[k]
    return Step("io", step.argv[:i] + step.argv[i + 2:])


def shrink(seq: Sequence, diverges: Callable[[Sequence], bool], budget: int = 200) -> Sequence:
    """Greedily drop steps, then single qemu-io commands, while ``diverges`` holds."""
    tries = 0
    changed = True
    while changed and tries < budget:
        changed = False
        for i in reversed(range(len(seq.steps))):
            if i >= len(seq.steps) or tries >= budget:
                continue
            cand = replace(seq, steps=seq.steps[:i] + seq.steps[i + 1:])
            tries += 1
            if diverges(cand):
                seq, changed = cand, True
                continue
            k = 0
            while tries < budget:
                step = _without_command(seq.steps[i], k)
                if step is None:
                    break
                cand = replace(seq, steps=seq.steps[:i] + [step] + seq.steps[i + 1:])
                tries += 1
                if diverges(cand):
                    seq, changed = cand, True
                else:
                    k += 1
    return seq
