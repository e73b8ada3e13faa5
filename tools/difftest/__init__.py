"""Differential testing of qcowlab against QEMU 7.2.

A *sequence* of qemu-img/qemu-io command lines is run by two *runners* (real
QEMU and the emulator) in two scratch directories; their filtered outputs,
exit codes, final image bytes and sparseness are compared, and real
``qemu-img check`` judges every qcow2 image the emulator wrote.
"""
