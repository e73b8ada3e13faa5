"""qcowlab-qsd: a QMP server standing in for QEMU 7.2's qemu-storage-daemon.

Modules, one job each: ``cmdline`` (qemu-storage-daemon's options), ``server``
(sockets, the QMP wire protocol and negotiation), ``protocol`` (message
encoding and errors), ``qapi`` (argument checking against the schema),
``commands`` (the command table), ``blockdev`` (the node graph), ``jobs``
(blockdev-create, x-blockdev-amend), ``hmp`` (human-monitor-command).
"""
