"""Disk encryption (QEMU's crypto/ layer): secrets, ciphers, IV generators, LUKS, qcow AES.

Imported only when an encrypted image or an ``--object`` is used; the
``cryptography`` package provides the ciphers, hashes and PBKDF2.
"""
