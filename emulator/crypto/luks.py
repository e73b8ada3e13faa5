"""The LUKS (v1) format (crypto/block-luks.c): header, key slots, open, create, amend, info.

A :class:`Luks` is one QCryptoBlock of format luks. It reads and writes its
header through callbacks, so that the same code serves the standalone
``luks`` block driver (header at the start of the file) and qcow2 (header in
clusters named by the crypto header extension):
``read(offset, length) -> bytes``, ``write(offset, data)`` and, at creation,
``init(header_length)`` which reserves the header space.
Salts, the master key, the UUID and the anti-forensic stripes are random;
PBKDF2 iteration counts come from a CPU-time benchmark scaled by iter-time.
"""
from __future__ import annotations

import os
import struct

from emulator.crypto import afsplit, cipher as ciph
from emulator.crypto.errors import CryptoError
from emulator.crypto.hash import DIGEST_LEN
from emulator.crypto.ivgen import IVGEN_ALGS, IVGen
from emulator.crypto.pbkdf import count_iters, pbkdf2
from emulator.crypto.sectors import encdec

MAGIC = b"LUKS\xba\xbe"
VERSION = 1
HEADER_SIZE = 592
SALT_LEN = 32
DIGEST_LEN_LUKS = 20
NUM_KEY_SLOTS = 8
STRIPES = 4000
MIN_SLOT_KEY_ITERS = 1000
MIN_MASTER_KEY_ITERS = 1000
KEY_SLOT_OFFSET = 4096
SLOT_DISABLED = 0x0000DEAD
SLOT_ENABLED = 0x00AC71F3
SECTOR_SIZE = 512
DEFAULT_ITER_TIME_MS = 2000
ERASE_ITERATIONS = 40
HASH_ALGS = tuple(DIGEST_LEN)
#: LUKS cipher name -> the QAPI algorithms by key size in bytes
CIPHER_NAMES = {
    "aes": {16: "aes-128", 24: "aes-192", 32: "aes-256"},
    "cast5": {16: "cast5-128"},
    "serpent": {16: "serpent-128", 24: "serpent-192", 32: "serpent-256"},
    "twofish": {16: "twofish-128", 24: "twofish-192", 32: "twofish-256"},
}
_HDR = struct.Struct(">6sH32s32s32sII20s32sI40s")
_SLOT = struct.Struct(">II32sII")


class KeySlot:
    """One key slot header: state, PBKDF2 iterations and salt, key material location."""

    __slots__ = ("active", "iterations", "salt", "key_offset_sector", "stripes")

    def __init__(self, active: int = SLOT_DISABLED, iterations: int = 0,
                 salt: bytes = bytes(SALT_LEN), key_offset_sector: int = 0,
                 stripes: int = STRIPES) -> None:
        self.active, self.iterations, self.salt = active, iterations, salt
        self.key_offset_sector, self.stripes = key_offset_sector, stripes


class Header:
    """The 592-byte LUKS partition header (big-endian on disk)."""

    def __init__(self) -> None:
        self.magic, self.version = MAGIC, VERSION
        self.cipher_name = self.cipher_mode = self.hash_spec = b""
        self.payload_offset_sector = self.master_key_len = 0
        self.master_key_digest = bytes(DIGEST_LEN_LUKS)
        self.master_key_salt = bytes(SALT_LEN)
        self.master_key_iterations = 0
        self.uuid = bytes(40)
        self.key_slots = [KeySlot() for _ in range(NUM_KEY_SLOTS)]

    @classmethod
    def parse(cls, buf: bytes) -> "Header":
        h = cls()
        (h.magic, h.version, h.cipher_name, h.cipher_mode, h.hash_spec,
         h.payload_offset_sector, h.master_key_len, h.master_key_digest,
         h.master_key_salt, h.master_key_iterations, h.uuid) = _HDR.unpack_from(buf, 0)
        h.key_slots = [KeySlot(*_SLOT.unpack_from(buf, _HDR.size + i * _SLOT.size))
                       for i in range(NUM_KEY_SLOTS)]
        return h

    def pack(self) -> bytes:
        out = _HDR.pack(self.magic, self.version, self.cipher_name, self.cipher_mode,
                        self.hash_spec, self.payload_offset_sector, self.master_key_len,
                        self.master_key_digest, self.master_key_salt,
                        self.master_key_iterations, self.uuid)
        for s in self.key_slots:
            out += _SLOT.pack(s.active, s.iterations, s.salt, s.key_offset_sector, s.stripes)
        return out


def has_format(buf: bytes) -> bool:
    """qcrypto_block_luks_has_format: the magic and version 1."""
    return len(buf) >= 8 and buf[:6] == MAGIC and struct.unpack_from(">H", buf, 6)[0] == VERSION


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1")


def _splitkeylen_sectors(master_key_len: int, stripes: int) -> int:
    """Sectors of one slot's key material, rounded up to the header size (as cryptsetup)."""
    header_sectors = KEY_SLOT_OFFSET // SECTOR_SIZE
    sectors = -(-(master_key_len * stripes) // SECTOR_SIZE)
    return -(-sectors // header_sectors) * header_sectors


def _essiv_cipher(alg: str, hash_alg: str) -> str:
    """The ESSIV cipher: same family, key size matching the hash's digest (dm-crypt quirk)."""
    digestlen = DIGEST_LEN[hash_alg]
    if digestlen == ciph.key_len(alg):
        return alg
    family = alg.split("-")[0]
    names = {"aes": "AES", "serpent": "Serpent", "twofish": "Twofish"}
    if family not in names:
        raise CryptoError(f"Cipher {alg} not supported with essiv")
    for bits in (128, 192, 256):
        if digestlen * 8 == bits:
            return f"{family}-{bits}"
    raise CryptoError(f"No {names[family]} cipher with key size {digestlen} available")


def _enum(opts: dict, key: str, allowed, default: str | None) -> str | None:
    """A QAPI enum member (the visitor names the member without the encrypt. prefix)."""
    value = opts.get(key)
    if value is None:
        return default
    if value not in allowed:
        raise CryptoError(f"Parameter '{key}' does not accept value '{value}'")
    return value


def _iter_time(opts: dict, prefix: str) -> int | None:
    value = opts.get("iter-time")
    if value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 0)
    except ValueError:
        raise CryptoError(f"Parameter '{prefix}iter-time' expects a number") from None


class Luks:
    """An opened or created LUKS crypto block."""

    sector_size = SECTOR_SIZE

    def __init__(self) -> None:
        self.header = Header()
        self.secret: str | None = None
        self.cipher: ciph.Cipher | None = None
        self.ivgen: IVGen | None = None
        self.niv = 0
        self.payload_offset = 0

    # ------------------------------------------------------------ algorithms
    def _parse_header(self) -> None:
        """qcrypto_block_luks_parse_header: algorithms from the header's strings."""
        h = self.header
        spec = _cstr(h.cipher_mode)
        if "-" not in spec:
            raise CryptoError(f"Unexpected cipher mode string format '{spec}'")
        mode, ivgen = spec.split("-", 1)
        ivhash = None
        if ":" in ivgen:
            ivgen, ivhash = ivgen.split(":", 1)
            if ivhash not in HASH_ALGS:
                raise CryptoError(f"Hash algorithm '{ivhash}' not supported")
        if mode not in ciph.MODES:
            raise CryptoError(f"Cipher mode '{mode}' not supported")
        name = _cstr(h.cipher_name)
        size = h.master_key_len // 2 if mode == "xts" else h.master_key_len
        alg = CIPHER_NAMES.get(name, {}).get(size)
        if alg is None:
            raise CryptoError(f"Algorithm '{name}' with key size {size} bytes not supported")
        hash_alg = _cstr(h.hash_spec)
        if hash_alg not in HASH_ALGS:
            raise CryptoError(f"Hash algorithm '{hash_alg}' not supported")
        if ivgen not in IVGEN_ALGS:
            raise CryptoError(f"IV generator '{ivgen}' not supported")
        self.cipher_alg, self.cipher_mode, self.hash_alg = alg, mode, hash_alg
        self.ivgen_alg, self.ivgen_hash_alg = ivgen, ivhash
        if ivgen == "essiv":
            if ivhash is None:
                raise CryptoError("Missing IV generator hash specification")
            self.ivgen_cipher_alg = _essiv_cipher(alg, ivhash)
        else:
            self.ivgen_cipher_alg = alg

    def _check_header(self) -> None:
        """qcrypto_block_luks_check_header: the sanity checks, with QEMU's messages."""
        h = self.header
        if h.magic != MAGIC:
            raise CryptoError("Volume is not in LUKS format")
        if h.version != VERSION:
            raise CryptoError(f"LUKS version {h.version} is not supported")
        for raw, what in ((h.cipher_name, "cipher name"), (h.cipher_mode, "cipher mode"),
                          (h.hash_spec, "hash spec")):
            if b"\0" not in raw:
                raise CryptoError(f"LUKS header {what} is not NUL terminated")
        header_sectors = KEY_SLOT_OFFSET // SECTOR_SIZE
        if h.payload_offset_sector < header_sectors:
            raise CryptoError("LUKS payload is overlapping with the header")
        if h.master_key_iterations == 0:
            raise CryptoError("LUKS key iteration count is zero")
        for i, s in enumerate(h.key_slots):
            start = s.key_offset_sector
            length = _splitkeylen_sectors(h.master_key_len, s.stripes)
            if s.stripes != STRIPES:
                raise CryptoError(f"Keyslot {i} is corrupted (stripes {_i32(s.stripes)} != "
                                  f"{STRIPES})")
            if s.active not in (SLOT_DISABLED, SLOT_ENABLED):
                raise CryptoError(f"Keyslot {i} state (active/disable) is corrupted")
            if s.active == SLOT_ENABLED and s.iterations == 0:
                raise CryptoError(f"Keyslot {i} iteration count is zero")
            if start < header_sectors:
                raise CryptoError(f"Keyslot {i} is overlapping with the LUKS header")
            if start + length > h.payload_offset_sector:
                raise CryptoError(f"Keyslot {i} is overlapping with the encrypted payload")
            for j in range(i + 1, NUM_KEY_SLOTS):
                s2 = h.key_slots[j]
                len2 = _splitkeylen_sectors(h.master_key_len, s2.stripes)
                if start + length > s2.key_offset_sector and s2.key_offset_sector + len2 > start:
                    raise CryptoError(f"Keyslots {i} and {j} are overlapping in the header")

    def _setup_payload(self, masterkey: bytes) -> None:
        self.niv = ciph.iv_len(self.cipher_alg, self.cipher_mode)
        self.ivgen = IVGen(self.ivgen_alg, self.ivgen_cipher_alg, self.ivgen_hash_alg,
                           masterkey)
        self.cipher = ciph.Cipher(self.cipher_alg, self.cipher_mode, masterkey)

    # ------------------------------------------------------------- key slots
    def _slot_crypt(self, key: bytes):
        return (ciph.Cipher(self.cipher_alg, self.cipher_mode, key),
                ciph.iv_len(self.cipher_alg, self.cipher_mode),
                IVGen(self.ivgen_alg, self.ivgen_cipher_alg, self.ivgen_hash_alg, key))

    def load_key(self, idx: int, password: bytes, read) -> bytes | None:
        """qcrypto_block_luks_load_key: the master key if ``password`` opens slot ``idx``."""
        h = self.header
        slot = h.key_slots[idx]
        if slot.active != SLOT_ENABLED:
            return None
        n = h.master_key_len
        possible = pbkdf2(self.hash_alg, password, slot.salt, slot.iterations, n)
        split = read(slot.key_offset_sector * SECTOR_SIZE, n * slot.stripes)
        c, niv, ivgen = self._slot_crypt(possible)
        split = encdec(c, niv, ivgen, SECTOR_SIZE, 0, split, False)
        masterkey = afsplit.decode(self.hash_alg, n, slot.stripes, split)
        digest = pbkdf2(self.hash_alg, masterkey, h.master_key_salt,
                        h.master_key_iterations, DIGEST_LEN_LUKS)
        return masterkey if digest == h.master_key_digest else None

    def find_key(self, password: bytes, read) -> bytes:
        """qcrypto_block_luks_find_key: try every slot in turn."""
        for i in range(NUM_KEY_SLOTS):
            key = self.load_key(i, password, read)
            if key is not None:
                return key
        raise CryptoError("Invalid password, cannot unlock any keyslot")

    def store_key(self, idx: int, password: bytes, masterkey: bytes, iter_time: int,
                  write) -> None:
        """qcrypto_block_luks_store_key: fill slot ``idx`` and write the header."""
        h = self.header
        slot = h.key_slots[idx]
        slot.salt = os.urandom(SALT_LEN)
        n = h.master_key_len
        iters = count_iters(self.hash_alg, password, slot.salt, n)
        if iters > ((1 << 64) - 1) // max(iter_time, 1):
            raise CryptoError(f"PBKDF iterations {iters} too large to scale")
        iters = iters * iter_time // 1000
        if iters > 0xFFFFFFFF:
            raise CryptoError(f"PBKDF iterations {iters} larger than {0xFFFFFFFF}")
        slot.iterations = max(iters, MIN_SLOT_KEY_ITERS)
        slotkey = pbkdf2(self.hash_alg, password, slot.salt, slot.iterations, n)
        c, niv, ivgen = self._slot_crypt(slotkey)
        split = afsplit.encode(self.hash_alg, masterkey, slot.stripes,
                               os.urandom(n * (slot.stripes - 1)))
        write(slot.key_offset_sector * SECTOR_SIZE,
              encdec(c, niv, ivgen, SECTOR_SIZE, 0, split, True))
        slot.active = SLOT_ENABLED
        write(0, h.pack())

    def erase_key(self, idx: int, write) -> None:
        """qcrypto_block_luks_erase_key: reset the slot header, overwrite its material."""
        slot = self.header.key_slots[idx]
        length = self.header.master_key_len * slot.stripes
        slot.salt, slot.iterations, slot.active = bytes(SALT_LEN), 0, SLOT_DISABLED
        write(0, self.header.pack())
        for _ in range(ERASE_ITERATIONS):
            write(slot.key_offset_sector * SECTOR_SIZE, os.urandom(length))

    def _active(self, idx: int) -> bool:
        return self.header.key_slots[idx].active == SLOT_ENABLED

    # ------------------------------------------------------------ open/create
    @classmethod
    def open(cls, opts: dict, prefix: str, read, no_io: bool) -> "Luks":
        """qcrypto_block_luks_open: ``opts`` holds 'key-secret' (without the prefix)."""
        from emulator.crypto.secret import lookup_as_utf8
        password = None
        if not no_io:
            if opts.get("key-secret") is None:
                raise CryptoError(f"Parameter '{prefix}key-secret' is required for cipher")
            password = lookup_as_utf8(opts["key-secret"])
        s = cls()
        s.secret = opts.get("key-secret")
        s.header = Header.parse(read(0, HEADER_SIZE))
        s._check_header()
        s._parse_header()
        if not no_io:
            s._setup_payload(s.find_key(password, read))
        s.payload_offset = s.header.payload_offset_sector * SECTOR_SIZE
        return s

    @classmethod
    def create(cls, opts: dict, prefix: str, init, write) -> "Luks":
        """qcrypto_block_luks_create: a new header with key slot 0 for 'key-secret'."""
        from emulator.crypto.secret import lookup_as_utf8
        s = cls()
        iter_time = _iter_time(opts, prefix)
        s.cipher_alg = _enum(opts, "cipher-alg", ciph.ALGORITHMS, "aes-256")
        s.cipher_mode = _enum(opts, "cipher-mode", ciph.MODES, "xts")
        s.ivgen_alg = _enum(opts, "ivgen-alg", IVGEN_ALGS, "plain64")
        s.ivgen_hash_alg = _enum(opts, "ivgen-hash-alg", HASH_ALGS, None)
        s.hash_alg = _enum(opts, "hash-alg", HASH_ALGS, "sha256")
        if iter_time is None:
            iter_time = DEFAULT_ITER_TIME_MS
        if s.ivgen_alg == "essiv" and s.ivgen_hash_alg is None:
            s.ivgen_hash_alg = "sha256"
        if opts.get("key-secret") is None:
            raise CryptoError(f"Parameter '{prefix}key-secret' is required for cipher")
        s.secret = opts["key-secret"]
        password = lookup_as_utf8(s.secret)
        h = s.header
        import uuid
        h.uuid = str(uuid.uuid4()).encode().ljust(40, b"\0")
        family = s.cipher_alg.split("-")[0]
        if family not in CIPHER_NAMES:
            raise CryptoError(f"Algorithm '{s.cipher_alg}' not supported")
        spec = f"{s.cipher_mode}-{s.ivgen_alg}"
        if s.ivgen_hash_alg is not None:
            spec += f":{s.ivgen_hash_alg}"
        if s.ivgen_alg == "essiv":
            s.ivgen_cipher_alg = _essiv_cipher(s.cipher_alg, s.ivgen_hash_alg)
        else:
            s.ivgen_cipher_alg = s.cipher_alg
        h.cipher_name, h.cipher_mode = family.encode(), spec.encode()
        h.hash_spec = s.hash_alg.encode()
        h.master_key_len = ciph.key_len(s.cipher_alg) * (2 if s.cipher_mode == "xts" else 1)
        h.master_key_salt = os.urandom(SALT_LEN)
        masterkey = os.urandom(h.master_key_len)
        s._setup_payload(masterkey)
        iters = count_iters(s.hash_alg, masterkey, h.master_key_salt, DIGEST_LEN_LUKS)
        if iters > ((1 << 64) - 1) // max(iter_time, 1):
            raise CryptoError(f"PBKDF iterations {iters} too large to scale")
        iters = iters * iter_time // 1000 // 8
        if iters > 0xFFFFFFFF:
            raise CryptoError(f"PBKDF iterations {iters} larger than {0xFFFFFFFF}")
        h.master_key_iterations = max(iters, MIN_MASTER_KEY_ITERS)
        h.master_key_digest = pbkdf2(s.hash_alg, masterkey, h.master_key_salt,
                                     h.master_key_iterations, DIGEST_LEN_LUKS)
        header_sectors = KEY_SLOT_OFFSET // SECTOR_SIZE
        split_sectors = _splitkeylen_sectors(h.master_key_len, STRIPES)
        for i, slot in enumerate(h.key_slots):
            slot.active, slot.stripes = SLOT_DISABLED, STRIPES
            slot.key_offset_sector = header_sectors + i * split_sectors
        h.payload_offset_sector = header_sectors + NUM_KEY_SLOTS * split_sectors
        s.payload_offset = h.payload_offset_sector * SECTOR_SIZE
        init(s.payload_offset)
        s.store_key(0, password, masterkey, iter_time, write)
        return s

    # ----------------------------------------------------------------- amend
    def amend(self, opts: dict, force: bool, read, write) -> None:
        """qcrypto_block_luks_amend_options: 'state' active adds a key, inactive erases."""
        state = opts.get("state")
        if state is None:
            raise CryptoError("Parameter 'state' is missing")
        if state not in ("active", "inactive"):
            raise CryptoError(f"Parameter 'state' does not accept value '{state}'")
        if state == "active":
            self._add_keyslot(opts, force, read, write)
        else:
            self._erase_keyslots(opts, force, read, write)

    def _add_keyslot(self, opts: dict, force: bool, read, write) -> None:
        from emulator.crypto.secret import lookup_as_utf8
        iter_time = _iter_time(opts, "")
        if iter_time is None:
            iter_time = DEFAULT_ITER_TIME_MS
        secret = opts.get("secret", self.secret)
        if opts.get("new-secret") is None:
            raise CryptoError("'new-secret' is required to activate a keyslot")
        if opts.get("old-secret") is not None:
            raise CryptoError("'old-secret' must not be given when activating keyslots")
        if opts.get("keyslot") is not None:
            keyslot = opts["keyslot"]
            if keyslot < 0 or keyslot >= NUM_KEY_SLOTS:
                raise CryptoError(f"Invalid keyslot {keyslot & 0xFFFFFFFF} specified, must be "
                                  f"between 0 and {NUM_KEY_SLOTS - 1}")
        else:
            keyslot = next((i for i in range(NUM_KEY_SLOTS) if not self._active(i)), -1)
            if keyslot == -1:
                raise CryptoError("Can't add a keyslot - all keyslots are in use")
        if not force and self._active(keyslot):
            raise CryptoError(f"Refusing to overwrite active keyslot {keyslot} - please "
                              f"erase it first")
        old_password = lookup_as_utf8(secret)
        try:
            masterkey = self.find_key(old_password, read)
        except CryptoError as e:
            raise CryptoError(e.message, "Failed to retrieve the master key") from None
        new_password = lookup_as_utf8(opts["new-secret"])
        self.store_key(keyslot, new_password, masterkey, iter_time, write)

    def _erase_keyslots(self, opts: dict, force: bool, read, write) -> None:
        from emulator.crypto.secret import lookup_as_utf8
        for key in ("new-secret", "iter-time", "secret"):
            if opts.get(key) is not None:
                raise CryptoError(f"'{key}' must not be given when erasing keyslots")
        old = opts.get("old-secret")
        old_password = lookup_as_utf8(old) if old is not None else None
        active = sum(self._active(i) for i in range(NUM_KEY_SLOTS))
        if opts.get("keyslot") is not None:
            keyslot = opts["keyslot"]
            if keyslot < 0 or keyslot >= NUM_KEY_SLOTS:
                raise CryptoError(f"Invalid keyslot {keyslot} specified, must be between 0 "
                                  f"and {NUM_KEY_SLOTS - 1}")
            if old_password is not None and self.load_key(keyslot, old_password, read) is None:
                raise CryptoError(f"Given keyslot {keyslot} doesn't contain the given old "
                                  f"password for erase operation")
            if not force and not self._active(keyslot):
                raise CryptoError(f"Given keyslot {keyslot} is already erased (inactive) ")
            if not force and active == 1:
                raise CryptoError(f"Attempt to erase the only active keyslot {keyslot} which "
                                  f"will erase all the data in the image irreversibly - "
                                  f"refusing operation")
            self.erase_key(keyslot, write)
        elif old_password is not None:
            matching = [i for i in range(NUM_KEY_SLOTS)
                        if self.load_key(i, old_password, read) is not None]
            if not matching:
                raise CryptoError("No keyslots match given (old) password for erase operation")
            if not force and len(matching) == active:
                raise CryptoError("All the active keyslots match the (old) password that was "
                                  "given and erasing them will erase all the data in the "
                                  "image irreversibly - refusing operation")
            for i in matching:
                self.erase_key(i, write)
        else:
            raise CryptoError("To erase keyslot(s), either explicit keyslot index or the "
                              "password currently contained in them must be given")

    # ------------------------------------------------------------- data, info
    def encrypt(self, offset: int, data: bytes) -> bytes:
        return encdec(self.cipher, self.niv, self.ivgen, SECTOR_SIZE, offset, data, True)

    def decrypt(self, offset: int, data: bytes) -> bytes:
        return encdec(self.cipher, self.niv, self.ivgen, SECTOR_SIZE, offset, data, False)

    def get_info(self) -> dict:
        """QCryptoBlockInfoLUKS, keys in QAPI order."""
        h = self.header
        info: dict = {"cipher-alg": self.cipher_alg, "cipher-mode": self.cipher_mode,
                      "ivgen-alg": self.ivgen_alg}
        if self.ivgen_alg == "essiv":
            info["ivgen-hash-alg"] = self.ivgen_hash_alg
        info["hash-alg"] = self.hash_alg
        info["payload-offset"] = self.payload_offset
        info["master-key-iters"] = h.master_key_iterations
        info["uuid"] = h.uuid.split(b"\0", 1)[0].decode("latin-1")
        slots = []
        for s in h.key_slots:
            slot: dict = {"active": s.active == SLOT_ENABLED}
            if slot["active"]:
                slot["iters"] = s.iterations
                slot["stripes"] = s.stripes
            slot["key-offset"] = s.key_offset_sector * SECTOR_SIZE
            slots.append(slot)
        info["slots"] = slots
        return info


def _i32(v: int) -> int:
    return v - (1 << 32) if v >= 1 << 31 else v
