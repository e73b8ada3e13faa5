"""Result of a qcow2 check: QEMU's BdrvCheckResult and BlockFragInfo, repair modes."""
from __future__ import annotations

from dataclasses import dataclass, field

FIX_LEAKS = 1
FIX_ERRORS = 2


@dataclass
class FragInfo:
    """QEMU's BlockFragInfo."""

    total_clusters: int = 0
    allocated_clusters: int = 0
    fragmented_clusters: int = 0
    compressed_clusters: int = 0


@dataclass
class CheckResult:
    """QEMU's BdrvCheckResult."""

    corruptions: int = 0
    leaks: int = 0
    check_errors: int = 0
    corruptions_fixed: int = 0
    leaks_fixed: int = 0
    image_end_offset: int = 0
    bfi: FragInfo = field(default_factory=FragInfo)

    def copy(self) -> "CheckResult":
        return CheckResult(self.corruptions, self.leaks, self.check_errors,
                           self.corruptions_fixed, self.leaks_fixed,
                           self.image_end_offset, FragInfo(**vars(self.bfi)))


def add_result(out: CheckResult, src: CheckResult, allocation_info: bool) -> None:
    """qcow2_add_check_result."""
    out.corruptions += src.corruptions
    out.leaks += src.leaks
    out.check_errors += src.check_errors
    out.corruptions_fixed += src.corruptions_fixed
    out.leaks_fixed += src.leaks_fixed
    if allocation_info:
        out.image_end_offset = src.image_end_offset
        out.bfi = FragInfo(**vars(src.bfi))
