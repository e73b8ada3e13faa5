"""qcow2 runtime options (qcow2_runtime_opts, qcow2_update_options_prepare/commit).

``prepare(s, options, unmap)`` consumes the qcow2 options from ``options``,
validates them in QEMU's order with QEMU's messages (BlockError) and returns
a :class:`Qcow2Opts`; ``commit(s, r)`` applies it to an open node: cache
sizes (new caches after the old ones were flushed), lazy refcounts (marking
the image clean when they are switched off), overlap checks, discard
pass-through. On open and on reopen nothing changes unless prepare succeeded.
"""
from __future__ import annotations

import errno

from emulator.block.node import BlockError
from emulator.block.options import BOOL, NUMBER, SIZE, STRING, absorb

#: the overlap-check.* flags, in bit order
OVERLAP_FLAGS = ("main-header", "active-l1", "active-l2", "refcount-table", "refcount-block",
                 "snapshot-table", "inactive-l1", "inactive-l2", "bitmap-directory")

DESCS = {
    "lazy-refcounts": BOOL, "pass-discard-request": BOOL, "pass-discard-snapshot": BOOL,
    "pass-discard-other": BOOL, "overlap-check": STRING, "overlap-check.template": STRING,
    **{"overlap-check." + f: BOOL for f in OVERLAP_FLAGS},
    "cache-size": SIZE, "l2-cache-size": SIZE, "l2-cache-entry-size": SIZE,
    "refcount-cache-size": SIZE, "cache-clean-interval": NUMBER,
}

DEFAULT_L2_CACHE_MAX_SIZE = 32 * 1024 * 1024
MIN_L2_CACHE_SIZE = 2
MIN_REFCOUNT_CACHE_SIZE = 4
DEFAULT_CACHE_CLEAN_INTERVAL = 600
INT_MAX = (1 << 31) - 1
UINT_MAX = (1 << 32) - 1
MIN_SLOTS_CAP = 1024


class Qcow2Opts:
    """The validated runtime options (Qcow2ReopenState)."""

    __slots__ = ("l2_cache_entries", "l2_cache_entry_size", "refcount_cache_entries",
                 "cache_clean_interval", "lazy_refcounts", "overlap_check",
                 "discard_request", "discard_snapshot", "discard_other")


def _cache_sizes(s, o: dict) -> tuple[int, int, int]:
    """read_cache_sizes: (L2 cache bytes, L2 entry size, refcount cache bytes)."""
    cs = s.cluster_size
    min_refcount = MIN_REFCOUNT_CACHE_SIZE * cs
    max_l2_cache = -(-(-(-s.size // cs) * s.l2_entry_size) // cs) * cs
    combined = o.get("cache-size", 0)
    l2_max = o.get("l2-cache-size", DEFAULT_L2_CACHE_MAX_SIZE)
    refcount = o.get("refcount-cache-size", 0)
    entry = o.get("l2-cache-entry-size", cs)
    l2 = min(max_l2_cache, l2_max)
    if "cache-size" in o:
        if "l2-cache-size" in o and "refcount-cache-size" in o:
            raise BlockError(errno.EINVAL, "cache-size, l2-cache-size and refcount-cache-size "
                                           "may not be set at the same time")
        if "l2-cache-size" in o and l2_max > combined:
            raise BlockError(errno.EINVAL, "l2-cache-size may not exceed cache-size")
        if refcount > combined:
            raise BlockError(errno.EINVAL, "refcount-cache-size may not exceed cache-size")
        if "l2-cache-size" in o:
            refcount = combined - l2
        elif "refcount-cache-size" in o:
            l2 = combined - refcount
        elif combined >= max_l2_cache + min_refcount:
            l2, refcount = max_l2_cache, combined - max_l2_cache
        else:
            refcount = min(combined, min_refcount)
            l2 = combined - refcount
    if l2 < max_l2_cache and "l2-cache-entry-size" not in o:
        entry = min(cs, 4096)
    if entry < 512 or entry > cs or entry & (entry - 1):
        raise BlockError(errno.EINVAL, "L2 cache entry size must be a power of two between "
                                       f"512 and the cluster size ({cs})")
    return l2 & ((1 << 64) - 1), entry, refcount & ((1 << 64) - 1)


#: caches up to this size fit any host: /proc/meminfo is read only above it
SMALL_CACHE = 1 << 26


def _host_memory() -> int:
    """What the host's memory overcommit heuristic lets one allocation reach (RAM + swap)."""
    total = 0
    with open("/proc/meminfo", "rb") as f:  # bytes: no codec import at start-up
        for line in f:
            if line.startswith((b"MemTotal:", b"SwapTotal:")):
                total += int(line.split()[1]) * 1024
    return total


def _flush(cache, what: str) -> None:
    try:
        cache.flush()
    except BlockError as e:
        raise BlockError(e.errno, f"Failed to flush the {what} cache: {e.message}") from None


def prepare(s, options: dict, unmap: bool) -> Qcow2Opts:
    """qcow2_update_options_prepare without the encryption part; consumes the options."""
    o = absorb(options, DESCS)
    r = Qcow2Opts()
    l2, entry, refcount = _cache_sizes(s, o)
    r.l2_cache_entry_size = entry
    r.l2_cache_entries = max(l2 // entry, MIN_L2_CACHE_SIZE)
    if r.l2_cache_entries > INT_MAX:
        raise BlockError(errno.EINVAL, "L2 cache size too big")
    r.refcount_cache_entries = max(refcount // s.cluster_size, MIN_REFCOUNT_CACHE_SIZE)
    if r.refcount_cache_entries > INT_MAX:
        raise BlockError(errno.EINVAL, "Refcount cache size too big")
    if hasattr(s, "l2_cache"):  # reopen: the old caches are written back first
        _flush(s.l2_cache, "L2 table")
        _flush(s.refcount_cache, "refcount block")
    need = max(r.l2_cache_entries * entry, r.refcount_cache_entries * s.cluster_size)
    if need > SMALL_CACHE and need > _host_memory():
        raise BlockError(errno.ENOMEM, "Could not allocate metadata caches")
    r.cache_clean_interval = o.get("cache-clean-interval", DEFAULT_CACHE_CLEAN_INTERVAL)
    if r.cache_clean_interval > UINT_MAX:
        raise BlockError(errno.EINVAL, "Cache clean interval too big")
    from emulator.qcow2.header import COMPAT_LAZY_REFCOUNTS
    r.lazy_refcounts = o.get("lazy-refcounts",
                             bool(s.compatible_features & COMPAT_LAZY_REFCOUNTS))
    if r.lazy_refcounts and s.qcow_version < 3:
        raise BlockError(errno.EINVAL, "Lazy refcounts require a qcow2 image with at least "
                                       "qemu 1.1 compatibility level")
    if getattr(s, "use_lazy_refcounts", False) and not r.lazy_refcounts:
        s.mark_clean()
    mode, template = o.get("overlap-check"), o.get("overlap-check.template")
    if mode is not None and template is not None and mode != template:
        raise BlockError(errno.EINVAL, "Conflicting values for qcow2 options 'overlap-check' "
                                       f"('{mode}') and 'overlap-check.template' ('{template}')")
    mode = mode if mode is not None else template if template is not None else "cached"
    from emulator.qcow2 import overlap as ol
    templates = {"none": 0, "constant": ol.OL_CONSTANT, "cached": ol.OL_CACHED,
                 "all": ol.OL_ALL}
    if mode not in templates:
        raise BlockError(errno.EINVAL, f"Unsupported value '{mode}' for qcow2 option "
                                       "'overlap-check'. Allowed are any of the following: "
                                       "none, constant, cached, all")
    r.overlap_check = 0
    for bit, name in enumerate(OVERLAP_FLAGS):
        if o.get("overlap-check." + name, bool(templates[mode] & (1 << bit))):
            r.overlap_check |= 1 << bit
    r.discard_request = o.get("pass-discard-request", unmap)
    r.discard_snapshot = o.get("pass-discard-snapshot", True)
    r.discard_other = o.get("pass-discard-other", False)
    return r


def join_options(new: dict, old: dict) -> dict:
    """qcow2_join_options: reopen's new options over the old ones.

    A new overlap template drops the old overlap options (all but the
    bitmap-directory flag, as in QEMU), a new cache-size the old L2 and
    refcount cache sizes, and an old cache-size never survives.
    """
    old = dict(old)
    if "overlap-check" in new or "overlap-check.template" in new:
        for key in ("overlap-check", "overlap-check.template",
                    *("overlap-check." + f for f in OVERLAP_FLAGS[:-1])):
            old.pop(key, None)
    if "cache-size" in new:
        old.pop("l2-cache-size", None)
        old.pop("refcount-cache-size", None)
    merged = {**new, **{k: v for k, v in old.items() if k not in new}}
    if "cache-size" not in new:
        merged.pop("cache-size", None)
    return merged


def commit(s, r: Qcow2Opts) -> None:
    """qcow2_update_options_commit: the new caches and settings take effect."""
    from emulator.qcow2.cache import TableCache
    from emulator.qcow2.refcount import (
        DISCARD_ALWAYS, DISCARD_NEVER, DISCARD_OTHER, DISCARD_REQUEST, DISCARD_SNAPSHOT,
    )
    cs = s.cluster_size
    # the model's L2 cache holds whole tables: as many as the slices would fill; it
    # keeps at most what the default 32 MiB (or 1024 tables) holds: no run touches more
    cap = max(DEFAULT_L2_CACHE_MAX_SIZE // cs, MIN_SLOTS_CAP)
    l2_tables = max(r.l2_cache_entries * r.l2_cache_entry_size // cs, MIN_L2_CACHE_SIZE)
    s.l2_cache = TableCache(s, "l2", min(l2_tables, cap), cs)
    s.refcount_cache = TableCache(s, "refcount", min(r.refcount_cache_entries, cap), cs)
    s.l2_cache_entry_size = r.l2_cache_entry_size
    s.cache_clean_interval = r.cache_clean_interval
    s.use_lazy_refcounts = r.lazy_refcounts
    s.overlap_check = r.overlap_check
    s.discard_passthrough = {
        DISCARD_NEVER: False, DISCARD_ALWAYS: True, DISCARD_REQUEST: r.discard_request,
        DISCARD_SNAPSHOT: r.discard_snapshot, DISCARD_OTHER: r.discard_other,
    }
