"""User-creatable objects of the tools' ``--object`` option: ``secret`` (crypto/secret*.c).

``add_object(text)`` parses one ``--object`` argument the way
user_creatable_process_cmdline does (keyval syntax, implied ``qom-type``)
and creates the object; ``lookup_as_utf8(id)`` is
qcrypto_secret_lookup_as_utf8. Errors are CryptoError with QEMU's text;
``ObjectHelp`` carries the text ``--object help`` / ``TYPE,help`` prints.
``reset()`` forgets every object (one tool invocation's object root).
"""
from __future__ import annotations

from emulator.crypto.errors import CryptoError

#: object types qemu-img and qemu-io list for ``--object help``
CREATABLE = ("authz-list", "authz-list-file", "authz-simple", "main-loop",
             "pr-manager-helper", "secret", "secret_keyring", "thread-context",
             "throttle-group", "tls-cipher-suites", "tls-creds-anon", "tls-creds-psk",
             "tls-creds-x509")
SECRET_PROPS = ("data", "file", "format", "iv", "keyid")

#: id -> secret bytes (None for objects that are not secrets)
_objects: dict[str, bytes | None] = {}


class ObjectHelp(Exception):
    """The object asked for help: ``text`` is what to print (exit status 0)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def reset() -> None:
    _objects.clear()


def _keyval(text: str) -> tuple[dict, bool]:
    """keyval_parse with implied key 'qom-type': (options, help requested)."""
    opts: dict = {}
    wants_help = False
    pos, first = 0, True
    while pos < len(text):
        key_end = pos
        while key_end < len(text) and text[key_end] not in "=,":
            key_end += 1
        key = text[pos:key_end]
        if key_end >= len(text) or text[key_end] == ",":
            if key in ("help", "?"):
                wants_help = True
                pos = key_end + 1
                first = False
                continue
            if not first:
                raise CryptoError(f"Expected '=' after parameter '{key}'")
            key, value_start = "qom-type", pos
        else:
            value_start = key_end + 1
        value = []
        i = value_start
        while i < len(text):
            if text[i] == ",":
                if text[i + 1:i + 2] == ",":
                    value.append(",")
                    i += 2
                    continue
                break
            value.append(text[i])
            i += 1
        opts[key] = "".join(value)
        pos = i + 1
        first = False
    return opts, wants_help


def _is_identifier(name: str) -> bool:
    return bool(name) and name[0].isascii() and name[0].isalpha() and all(
        c.isascii() and (c.isalnum() or c in "-._") for c in name)


def _check_id(oid: str) -> None:
    if not _is_identifier(oid):
        raise CryptoError("Parameter 'id' expects an identifier",
                          "Identifiers consist of letters, digits, '-', '.', '_', "
                          "starting with a letter.\n")


def add_object(text: str) -> None:
    """user_creatable_process_cmdline: create the object, or raise CryptoError/ObjectHelp."""
    if text in ("help", "?"):
        raise ObjectHelp("List of user creatable objects:\n"
                         + "".join(f"  {t}\n" for t in CREATABLE))
    opts, wants_help = _keyval(text)
    qom_type = opts.pop("qom-type", None)
    if qom_type is None:
        raise CryptoError("Parameter 'qom-type' is missing")
    if qom_type not in CREATABLE:
        raise CryptoError(f"Parameter 'qom-type' does not accept value '{qom_type}'")
    if wants_help:
        if qom_type != "secret":
            raise CryptoError(f"qcowlab does not model object type '{qom_type}'")
        raise ObjectHelp("secret options:\n" + "".join(
            f"  {p}=<{'QCryptoSecretFormat' if p == 'format' else 'string'}>\n"
            for p in SECRET_PROPS))
    oid = opts.pop("id", None)
    if oid is None:
        raise CryptoError("Parameter 'id' is missing")
    _check_id(oid)
    if qom_type != "secret":
        raise CryptoError(f"qcowlab does not model object type '{qom_type}'")
    add_secret(oid, opts)


def add_secret(oid: str, opts: dict) -> None:
    """Create the secret ``oid`` from its properties (the ``--object`` options or
    QMP object-add's members, strings); CryptoError with QEMU's text."""
    _check_id(oid)
    opts = dict(opts)
    if "loaded" in opts:
        raise CryptoError("Property 'secret.loaded' is not writable")
    fmt = opts.pop("format", "raw")
    if fmt not in ("raw", "base64"):
        raise CryptoError(f"Parameter 'format' does not accept value '{fmt}'")
    keyid, iv = opts.pop("keyid", None), opts.pop("iv", None)
    data, file = opts.pop("data", None), opts.pop("file", None)
    for key in opts:
        raise CryptoError(f"Parameter '{key}' is unexpected")
    if oid in _objects:
        raise CryptoError(f"attempt to add duplicate property '{oid}' to object "
                          f"(type 'container')")
    if keyid == oid:  # the object is registered, but not loaded, while it decrypts
        raise CryptoError(f"Secret with id '{oid}' has no data")
    _objects[oid] = _load(data, file, fmt, keyid, iv)


def delete_object(oid: str) -> None:
    """object-del: forget the object ``oid``."""
    if oid not in _objects:
        raise CryptoError(f"object '{oid}' not found")
    del _objects[oid]


def _load(data: str | None, file: str | None, fmt: str, keyid: str | None,
          iv: str | None) -> bytes:
    """qcrypto_secret_complete: the raw secret bytes."""
    if file is not None:
        if data is not None:
            raise CryptoError("'file' and 'data' are mutually exclusive")
        try:
            with open(file, "rb") as f:
                raw = f.read()
        except OSError as e:
            import os
            raise CryptoError(f"Unable to read {file}: Failed to open file \u201c{file}\u201d: "
                              f"{os.strerror(e.errno)}") from None
    elif data is not None:
        raw = data.encode("utf-8", "surrogateescape")
    else:
        raise CryptoError("Either 'file' or 'data' must be provided")
    if keyid is not None:
        return _decrypt(raw, fmt, keyid, iv)
    return _base64(raw) if fmt == "base64" else raw


def _base64(text: bytes) -> bytes:
    """qbase64_decode (strict: the base64 alphabet only)."""
    import binascii
    if b"\0" in text:
        raise CryptoError("Base64 data contains embedded NUL characters")
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        raise CryptoError("Base64 data contains invalid characters") from None


def _decrypt(raw: bytes, fmt: str, keyid: str, iv: str | None) -> bytes:
    """qcrypto_secret_decrypt: AES-256-CBC with the key secret ``keyid``."""
    from emulator.crypto.cipher import Cipher
    key = lookup(keyid)
    if len(key) != 32:
        raise CryptoError("Key should be 32 bytes in length")
    if iv is None:
        raise CryptoError("IV is required to decrypt secret")
    ivb = _base64(iv.encode())
    if len(ivb) != 16:
        raise CryptoError(f"IV should be 16 bytes in length not {len(ivb)}")
    cipher_text = _base64(raw) if fmt == "base64" else raw
    plain = Cipher("aes-256", "cbc", key).decrypt(cipher_text, ivb)
    pad = plain[-1] if plain else 0
    if pad > 16 or pad > len(plain):
        raise CryptoError(f"Incorrect number of padding bytes ({pad}) found on decrypted data")
    return plain[:len(plain) - pad]


def lookup(secret_id: str) -> bytes:
    """qcrypto_secret_lookup: the secret's bytes."""
    if secret_id not in _objects:
        raise CryptoError(f"No secret with id '{secret_id}'")
    data = _objects[secret_id]
    if data is None:
        raise CryptoError(f"Object with id '{secret_id}' is not a secret")
    return data


def lookup_as_utf8(secret_id: str) -> bytes:
    """qcrypto_secret_lookup_as_utf8: the secret up to its first NUL (a C string)."""
    data = lookup(secret_id)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise CryptoError(f"Data from secret {secret_id} is not valid UTF-8") from None
    return data.split(b"\0", 1)[0]
