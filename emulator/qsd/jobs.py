"""Jobs: blockdev-create and x-blockdev-amend, query-jobs, job-dismiss.

A job runs to its end inside the command that starts it.  Its status
changes are sent as QEMU sends them: "created" and "running" before the
reply; a job that fails at once "aborting" and "concluded" before the reply
too; a job that succeeds "waiting", "pending" and "concluded" before the
reply when it did no I/O (an amend with nothing to change), after it
otherwise (its work waits for I/O in QEMU).  Jobs stay until job-dismiss
("null"), an amend job keeping its node in use; quit dismisses them all.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

from emulator.qsd.protocol import QmpError, event


@dataclass
class Job:
    id: str
    type: str
    status: str = "created"
    error: Optional[str] = None
    node: Any = None        # the graph entry an amend job holds


class Jobs:
    """The daemon's jobs, newest first (query-jobs order)."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.jobs: list[Job] = []

    def _status(self, job: Job, status: str) -> None:
        job.status = status
        self.daemon.emit(event("JOB_STATUS_CHANGE", {"id": job.id, "status": status}))

    def _run(self, job_id: str, kind: str, work: Callable[[], None],
             node: Any = None) -> dict[str, Any]:
        if any(j.id == job_id for j in self.jobs):
            raise QmpError(f"Job ID '{job_id}' already in use")
        job = Job(job_id, kind, node=node)
        if node is not None:
            node.users += 1
        self.jobs.insert(0, job)
        self._status(job, "created")
        self._status(job, "running")
        try:
            work()
        except Exception as exc:  # the job fails; a model bug must not leave it running
            job.error = exc.desc if isinstance(exc, QmpError) else \
                f"qcowlab internal error: {type(exc).__name__}: {exc}"
            self._status(job, "aborting")
            self._status(job, "concluded")
            return {}
        if kind == "amend":
            self._conclude(job)
        else:
            self.daemon.deferred.append(lambda: self._conclude(job))
        return {}

    def _conclude(self, job: Job) -> None:
        for status in ("waiting", "pending", "concluded"):
            self._status(job, status)

    # --- commands ---------------------------------------------------------------
    def create(self, args: dict[str, Any]) -> dict[str, Any]:
        options = args["options"]
        if options["driver"] not in ("file", "qcow2", "luks"):
            raise QmpError("Driver does not support blockdev-create")
        return self._run(args["job-id"], "create", lambda: self._create(options))

    def amend(self, args: dict[str, Any]) -> dict[str, Any]:
        entry = self.daemon.graph.lookup(None, args["node-name"])
        options = args["options"]
        if entry.node.format_name != options["driver"]:
            raise QmpError("x-blockdev-amend doesn't support changing the block driver")
        if options["driver"] not in ("qcow2", "luks"):
            raise QmpError("Driver does not support x-blockdev-amend")
        force = args.get("force", False)

        def work() -> None:
            from emulator.block.node import BlockError
            try:
                if options["driver"] == "luks":
                    entry.node.amend({k: v for k, v in options.items() if k != "driver"},
                                     force)
                elif "encrypt" in options:  # the only option qcow2 amends this way
                    _amend_qcow2_encryption(entry.node, dict(options["encrypt"]), force)
            except BlockError as exc:
                raise QmpError(exc.message) from None
        return self._run(args["job-id"], "amend", work, node=entry)

    def query(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for job in self.jobs:
            info: dict[str, Any] = {"id": job.id, "type": job.type, "status": job.status,
                                    "current-progress": 1, "total-progress": 1}
            if job.error is not None:
                info["error"] = job.error
            out.append(info)
        return out

    def dismiss(self, args: dict[str, Any]) -> dict[str, Any]:
        job = next((j for j in self.jobs if j.id == args["id"]), None)
        if job is None:
            raise QmpError("Job not found")
        if job.status != "concluded":
            raise QmpError(f"Job '{job.id}' in state '{job.status}' cannot accept "
                           f"command verb 'dismiss'")
        self.jobs.remove(job)
        if job.node is not None:
            job.node.users -= 1
        self._status(job, "null")
        return {}

    def dismiss_all(self) -> None:
        """Quit: every job goes, newest first."""
        for job in list(self.jobs):
            self.dismiss({"id": job.id})

    # --- blockdev-create ------------------------------------------------------------
    def _create(self, options: dict[str, Any]) -> None:
        from emulator.block.node import BlockError
        try:
            if options["driver"] == "file":
                from emulator.block.file import FileNode
                FileNode.create(options["filename"], options["size"],
                                options.get("preallocation", "off"))
                return
            if options["driver"] == "luks":
                self._create_luks(options)
                return
            self._create_qcow2(options)
        except BlockError as exc:
            raise QmpError(exc.message) from None

    def _create_qcow2(self, options: dict[str, Any]) -> None:
        from emulator.qcow2 import create as qcow2_create
        opts: dict[str, Any] = {"size": options["size"]}
        if "encrypt" in options:
            encrypt = dict(options["encrypt"])
            fmt = encrypt.pop("format")
            opts["encrypt.format"] = "aes" if fmt == "qcow" else fmt
            opts.update((f"encrypt.{k}", v) for k, v in encrypt.items())
        if "version" in options:
            opts["compat"] = "0.10" if options["version"] == "v2" else "1.1"
        for qapi, name in (("backing-file", "backing_file"), ("backing-fmt", "backing_fmt"),
                           ("cluster-size", "cluster_size"), ("preallocation", "preallocation"),
                           ("lazy-refcounts", "lazy_refcounts"),
                           ("refcount-bits", "refcount_bits"),
                           ("compression-type", "compression_type"),
                           ("extended-l2", "extended_l2"), ("data-file-raw", "data_file_raw")):
            if qapi in options:
                opts[name] = options[qapi]
        with contextlib.ExitStack() as stack:
            filename = self._file_of(options["file"], stack)
            if options["size"] % 512:
                raise QmpError("Image size must be a multiple of 512 bytes")
            if "data-file" in options:
                opts["data_file"] = self._file_of(options["data-file"], stack)
            # the files are the user's nodes: written in place, never removed on failure
            qcow2_create._create(filename, opts)

    def _create_luks(self, options: dict[str, Any]) -> None:
        """block_crypto_co_create_luks: a LUKS header and payload on the file node."""
        from emulator.block.file import FileNode
        from emulator.block.luks import create_on
        with contextlib.ExitStack() as stack:
            file = FileNode(self._file_of(options["file"], stack))
            try:
                create_on(file, options)
            finally:
                file.drv_close()

    def _file_of(self, ref: Any, stack: contextlib.ExitStack) -> str:
        """The host file a BlockdevRef names (a node's file is released meanwhile)."""
        if isinstance(ref, dict):
            if ref.get("driver") != "file":
                raise QmpError("qcowlab models blockdev-create only on file nodes")
            return ref["filename"]
        entry = self.daemon.graph.lookup(ref, ref)
        return stack.enter_context(self.daemon.graph.released(entry))


def _amend_qcow2_encryption(node: Any, encrypt: dict[str, Any], force: bool) -> None:
    """qcow2_co_amend: LUKS key slot changes of an encrypted qcow2 node."""
    from emulator.qcow2.crypto import CRYPT_LUKS, amend
    if getattr(node, "crypto", None) is None:
        raise QmpError("image is not encrypted, can't amend")
    if encrypt.pop("format") != "luks":
        raise QmpError("Amend can't be used to change the qcow2 encryption format")
    if node.crypt_method != CRYPT_LUKS:
        raise QmpError("Only LUKS encryption options can be amended for qcow2 with "
                       "blockdev-amend")
    amend(node, encrypt, force)
