"""Output filters shared by both sides of a comparison (as qemu-iotests' common.filter)."""
import re

_TIMING = re.compile(
    r"[0-9]* ops; [0-9/:. sec]* \([0-9/.inf]* [EPTGMKiBbytes]*/sec and [0-9/.inf]* ops/sec\)"
)
_DISK_SIZE = re.compile(r"^disk size: .*$", re.MULTILINE)
_ACTUAL_SIZE = re.compile(r'"actual-size": [0-9]+')
# creation times of internal snapshots (qemu-img snapshot -l, info, info --output=json)
_SNAPSHOT_DATE = re.compile(r"\b[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\b")
_SNAPSHOT_DATE_JSON = re.compile(r'"date-(n?sec)": [0-9]+')
_BENCH_TIME = re.compile(r"Run completed in [0-9]+\.[0-9]+ seconds")
# automatic node names: a per-process counter, then two random digits (id_generate)
_AUTO_NODE = re.compile(r"#block([0-9]+)[0-9]{2}\b")
# the random name of a -s temporary overlay (get_tmp_filename)
_TMP_OVERLAY = re.compile(r"/vl\.[A-Za-z0-9]{6}\b")


def filter_qemu_io(text: str) -> str:
    """Replace qemu-io's timing figures, like _filter_qemu_io."""
    return _TIMING.sub("X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)", text)


def mask_random_names(text: str) -> str:
    """Hide the random parts of automatic node names and of -s overlay names."""
    return _TMP_OVERLAY.sub("/vl.XXXXXX", _AUTO_NODE.sub(r"#block\1XX", text))


def filter_output(text: str, scratch_dirs: tuple[str, ...] = ()) -> str:
    """Filter timing lines, snapshot dates, 'disk size' (host-allocation dependent)
    and scratch paths."""
    text = filter_qemu_io(text)
    text = _BENCH_TIME.sub("Run completed in X seconds", text)
    text = mask_random_names(text)
    text = _SNAPSHOT_DATE.sub("yyyy-mm-dd hh:mm:ss", text)
    text = _SNAPSHOT_DATE_JSON.sub(r'"date-\1": X', text)
    text = _DISK_SIZE.sub("disk size: XXX", text)
    text = _ACTUAL_SIZE.sub('"actual-size": XXX', text)
    for d in scratch_dirs:
        text = text.replace(d.rstrip("/") + "/", "TEST_DIR/")
    return text
