"""qcow2 encryption (block/qcow2.c's crypto parts): LUKS in clusters, legacy AES.

- ``check_format(s, options)``: the 'encrypt.format' option against the header
  (qcow2_update_options_prepare).
- ``open_luks(s, payload, options, no_io)``: the crypto header extension and the
  LUKS block it points at; ``open_aes(s, options, no_io)``: the qcow AES block.
- ``encrypt``/``decrypt(s, host_offset, guest_offset, data)``: LUKS numbers
  sectors by host offset, AES by guest offset (crypt_physical_offset).
- ``set_up(s, opts)``: qcow2_set_up_encryption at image creation;
  ``extension(s)``: the header extension's payload; ``luks_header_length(values)``:
  the LUKS header size qemu-img measure counts.
- ``amend(s, opts, force)``: LUKS key slot changes; ``info(s)``: the encrypt
  part of the format specific information.
"""
from __future__ import annotations

import errno
import struct

from emulator.block.node import BlockError

CRYPT_AES, CRYPT_LUKS = 1, 2


def _opts(options: dict, keys) -> dict:
    return {k: options.get(f"encrypt.{k}") for k in keys}


def _error(e) -> BlockError:
    return BlockError(errno.EINVAL, e.message, e.hint)


def check_format(s, options: dict) -> None:
    """The 'encrypt.format' option must match the header's encryption method."""
    fmt = options.get("encrypt.format")
    if fmt is None:
        return
    if s.crypt_method == 0:
        raise BlockError(errno.EINVAL, f"No encryption in image header, but options "
                                       f"specified format '{fmt}'")
    have = "aes" if s.crypt_method == CRYPT_AES else "luks"
    if fmt != have:
        raise BlockError(errno.EINVAL, f"Header reported '{have}' encryption format but "
                                       f"options specify '{fmt}'")


def _header_read(s):
    from emulator.block import io
    from emulator.crypto.errors import CryptoError

    def read(offset: int, length: int) -> bytes:
        if offset + length > s.crypto_header_length:
            raise CryptoError("Request for data outside of extension header")
        try:
            return io.pread(s.file, s.crypto_header_offset + offset, length)
        except BlockError as e:
            raise CryptoError(f"Could not read encryption header: {e.message}") from None
    return read


def _header_write(s):
    from emulator.block import io
    from emulator.crypto.errors import CryptoError

    def write(offset: int, data: bytes) -> None:
        if offset + len(data) > s.crypto_header_length:
            raise CryptoError("Request for data outside of extension header")
        try:
            io.pwrite(s.file, s.crypto_header_offset + offset, data)
        except BlockError as e:
            raise CryptoError(f"Could not read encryption header: {e.message}") from None
    return write


def open_luks(s, payload: bytes, options: dict, no_io: bool) -> None:
    """The crypto header extension (offset, length) and the LUKS header it locates."""
    from emulator.crypto.errors import CryptoError
    from emulator.crypto.luks import Luks
    s.crypto_header_offset, s.crypto_header_length = struct.unpack(">QQ", payload)
    if s.crypto_header_offset % s.cluster_size:
        raise BlockError(errno.EINVAL, f"Encryption header offset '{s.crypto_header_offset}' "
                                       f"is not a multiple of cluster size '{s.cluster_size}'")
    try:
        s.crypto = Luks.open(_opts(options, ("key-secret",)), "encrypt.", _header_read(s),
                             no_io)
    except CryptoError as e:
        raise _error(e) from None
    _strong_options(s, options)


def _strong_options(s, options: dict) -> None:
    """A key-secret is a strong runtime option: the node's name becomes "json:{...}"."""
    if options.get("encrypt.key-secret") is not None:
        from emulator.block.luks import json_filename
        s.json_filename = json_filename(
            "qcow2", s.file, {"encrypt.key-secret": options["encrypt.key-secret"]})


def open_aes(s, options: dict, no_io: bool) -> None:
    """qcrypto_block_open for the qcow format (no header: the key is the password)."""
    from emulator.crypto.errors import CryptoError
    from emulator.crypto.qcow import QcowAes
    try:
        s.crypto = QcowAes.open(_opts(options, ("key-secret",)), "encrypt.", no_io)
    except CryptoError as e:
        raise _error(e) from None
    _strong_options(s, options)


def _sector_offset(s, host_offset: int, guest_offset: int) -> int:
    return host_offset if s.crypt_method == CRYPT_LUKS else guest_offset


def encrypt(s, host_offset: int, guest_offset: int, data: bytes) -> bytes:
    """qcow2_co_encrypt (a thread-pool job, see emulator/qcow2/threads.py)."""
    if not data:
        return data
    from emulator.qcow2.threads import co_process
    sector = _sector_offset(s, host_offset, guest_offset)
    return co_process(s, lambda: s.crypto.encrypt(sector, data))


def decrypt(s, host_offset: int, guest_offset: int, data: bytes) -> bytes:
    """qcow2_co_decrypt (a thread-pool job, see emulator/qcow2/threads.py)."""
    if not data:
        return data
    from emulator.qcow2.threads import co_process
    sector = _sector_offset(s, host_offset, guest_offset)
    return co_process(s, lambda: s.crypto.decrypt(sector, data))


def set_up(s, opts: dict) -> None:
    """qcow2_set_up_encryption: create the crypto block, then rewrite the header.

    ``opts`` holds the encrypt.* creation options without the prefix and
    'format' ('luks' or 'qcow').
    """
    from emulator.block import io
    from emulator.crypto.errors import CryptoError
    from emulator.qcow2.allocator import alloc_clusters
    from emulator.qcow2.overlap import pre_write_overlap_check
    fmt = opts.pop("format")
    s.crypt_method = CRYPT_LUKS if fmt == "luks" else CRYPT_AES

    def init(headerlen: int) -> None:
        try:
            offset = alloc_clusters(s, headerlen)
        except BlockError as e:
            raise CryptoError(f"Cannot allocate cluster for LUKS header size {headerlen}: "
                              f"{e.message}") from None
        s.crypto_header_offset, s.crypto_header_length = offset, headerlen
        length = -(-headerlen // s.cluster_size) * s.cluster_size
        pre_write_overlap_check(s, 0, offset, length)
        io.pwrite_zeroes(s.file, offset, length, 0)
    try:
        if fmt == "luks":
            from emulator.crypto.luks import Luks
            Luks.create(opts, "encrypt.", init, _header_write(s))
        else:
            from emulator.crypto.qcow import QcowAes
            QcowAes.create(opts, "encrypt.")
    except CryptoError as e:
        raise _error(e) from None
    s.update_header()


def luks_header_length(values: dict) -> int:
    """qcrypto_block_calculate_payload_offset: a LUKS creation that writes nothing."""
    from emulator.crypto.errors import CryptoError
    from emulator.crypto.luks import Luks
    opts = {k[len("encrypt."):]: v for k, v in values.items()
            if k.startswith("encrypt.") and k != "encrypt.format" and v is not None}
    length = []
    try:
        Luks.create(opts, "encrypt.", length.append, lambda offset, data: None)
    except CryptoError as e:
        raise _error(e) from None
    return length[0]


def extension(s) -> bytes | None:
    """The crypto header extension's payload, None without a LUKS header."""
    if not getattr(s, "crypto_header_offset", 0):
        return None
    return struct.pack(">QQ", s.crypto_header_offset, s.crypto_header_length)


def amend(s, opts: dict, force: bool) -> None:
    """The encrypt.* part of qcow2_amend_options (values without the prefix)."""
    from emulator.crypto.errors import CryptoError
    try:
        s.crypto.amend(opts, force, _header_read(s), _header_write(s))
    except CryptoError as e:
        raise _error(e) from None


def info(s) -> dict:
    """ImageInfoSpecificQCow2Encryption."""
    if s.crypt_method == CRYPT_AES:
        return {"format": "aes"}
    return {"format": "luks", **s.crypto.get_info()}
