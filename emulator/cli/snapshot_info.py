"""Internal snapshot listings: bdrv_snapshot_list, bdrv_snapshot_dump and the
SnapshotInfo list of ``qemu-img info`` (block/qapi.c, qemu-img.c dump_snapshots).

API summary:
- ``snapshot_infos(node)`` -> list of SnapshotInfo dicts (QAPI key order), empty
  when the node (or the file it falls back to) has no internal snapshots.
- ``dump_lines(infos)`` -> the "Snapshot list:" block as QEMU prints it (header,
  one line per snapshot), or "" for no snapshots.
"""
from __future__ import annotations

import time

ICOUNT_NONE = (1 << 64) - 1


def snapshot_infos(node) -> list[dict]:
    """SnapshotInfo dicts of a qcow2 node; [] for formats without internal snapshots."""
    infos = []
    for sn in getattr(node, "snapshots", None) or []:
        info = {"id": sn.id_str, "name": sn.name, "vm-state-size": sn.vm_state_size,
                "date-sec": sn.date_sec, "date-nsec": sn.date_nsec,
                "vm-clock-sec": sn.vm_clock_nsec // 1000000000,
                "vm-clock-nsec": sn.vm_clock_nsec % 1000000000}
        if sn.icount != ICOUNT_NONE:
            info["icount"] = sn.icount
        infos.append(info)
    return infos


def _pad(text: str, width: int, left: bool) -> str:
    """printf %-Ns / %Ns: width counted in bytes, as C does."""
    fill = " " * max(0, width - len(text.encode("utf-8", "surrogateescape")))
    return text + fill if left else fill + text


def _line(info: dict) -> str:
    from emulator.units import size_to_str
    date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["date-sec"]))
    nsec = info["vm-clock-sec"] * 1000000000 + info["vm-clock-nsec"]
    secs = nsec // 1000000000
    clock = (f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}."
             f"{nsec // 1000000 % 1000:03d}")
    icount = str(info["icount"]) if "icount" in info else ""
    return (f"{_pad(info['id'], 9, True)} {_pad(info['name'], 16, True)} "
            f"{_pad(size_to_str(info['vm-state-size']), 8, False)}{date:>20}{clock:>13}"
            f"{icount:>11}\n")


def dump_lines(infos: list[dict]) -> str:
    """The "Snapshot list:" block of ``qemu-img snapshot -l`` and ``qemu-img info``."""
    if not infos:
        return ""
    head = f"{'ID':<10}{'TAG':<17}{'VM SIZE':>8}{'DATE':>20}{'VM CLOCK':>13}{'ICOUNT':>11}\n"
    return "Snapshot list:\n" + head + "".join(_line(i) for i in infos)
