"""Creation option lists of the drivers qemu-img create can use (in QEMU's order).

The order matters: the "Formatting ..." line prints options in list order,
the format driver's list first, then the protocol's options not already
listed (qemu_opts_append).  Help texts are what ``-o help`` prints.
"""
from __future__ import annotations


from emulator.cli.qemuopts import BOOL, NUMBER, SIZE, STRING, OptDesc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

_CRYPTO = [
    OptDesc("encrypt.key-secret", STRING, None,
            "ID of secret providing qcow AES key or LUKS passphrase"),
    OptDesc("encrypt.cipher-alg", STRING, None, "Name of encryption cipher algorithm"),
    OptDesc("encrypt.cipher-mode", STRING, None, "Name of encryption cipher mode"),
    OptDesc("encrypt.ivgen-alg", STRING, None, "Name of IV generator algorithm"),
    OptDesc("encrypt.ivgen-hash-alg", STRING, None, "Name of IV generator hash algorithm"),
    OptDesc("encrypt.hash-alg", STRING, None, "Name of encryption hash algorithm"),
    OptDesc("encrypt.iter-time", NUMBER, None, "Time to spend in PBKDF in milliseconds"),
]

QCOW2: list[OptDesc] = [
    OptDesc("encryption", BOOL, None,
            "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)"),
    OptDesc("encrypt.format", STRING, None, "Encrypt the image, format choices: 'aes', 'luks'"),
    *_CRYPTO,
    OptDesc("cluster_size", SIZE, "65536", "qcow2 cluster size"),
    OptDesc("extended_l2", BOOL, "off", "Extended L2 tables"),
    OptDesc("preallocation", STRING, None,
            "Preallocation mode (allowed values: off, metadata, falloc, full)"),
    OptDesc("compression_type", STRING, "zlib",
            "Compression method used for image cluster compression"),
    OptDesc("size", SIZE, None, "Virtual disk size"),
    OptDesc("compat", STRING, None, "Compatibility level (v2 [0.10] or v3 [1.1])"),
    OptDesc("backing_file", STRING, None, "File name of a base image"),
    OptDesc("backing_fmt", STRING, None, "Image format of the base image"),
    OptDesc("data_file", STRING, None, "File name of an external data file"),
    OptDesc("data_file_raw", BOOL, None, "The external data file must stay valid as a raw image"),
    OptDesc("lazy_refcounts", BOOL, "off", "Postpone refcount updates"),
    OptDesc("refcount_bits", NUMBER, "16", "Width of a reference count entry in bits"),
]

RAW: list[OptDesc] = [OptDesc("size", SIZE, None, "Virtual disk size")]

#: block_crypto_create_opts_luks
LUKS: list[OptDesc] = [
    OptDesc("size", SIZE, None, "Virtual disk size"),
    OptDesc("key-secret", STRING, None, "ID of the secret that provides the keyslot passphrase"),
    *[OptDesc(d.name[len("encrypt."):], d.type, d.default, d.help) for d in _CRYPTO[1:]],
]

FILE: list[OptDesc] = [
    OptDesc("size", SIZE, None, "Virtual disk size"),
    OptDesc("nocow", BOOL, None, "Turn off copy-on-write (valid only on btrfs)"),
    OptDesc("preallocation", STRING, None, "Preallocation mode (allowed values: off, falloc, full)"),
    OptDesc("extent_size_hint", SIZE, None, "Extent size hint for the image file, 0 to disable"),
]

#: format name -> its own create options
FORMATS = {"qcow2": QCOW2, "raw": RAW, "luks": LUKS, "file": FILE}


def append(first: Sequence[OptDesc], second: Sequence[OptDesc]) -> list[OptDesc]:
    """qemu_opts_append(): ``first`` then the options of ``second`` it lacks."""
    names = {d.name for d in first}
    return list(first) + [d for d in second if d.name not in names]
