"""The QAPI types of the commands qcowlab-qsd implements (qapi/block-core.json)."""
from __future__ import annotations

from emulator.qsd.qapi import Alternate, Enum, List, Struct, Union, members

#: BlockdevDriver, every value QEMU 7.2 (Debian) accepts
DRIVERS = Enum(tuple(
    "blkdebug blklogwrites blkreplay blkverify bochs cloop compress copy-before-write "
    "copy-on-read dmg file snapshot-access ftp ftps gluster host_cdrom host_device http "
    "https io_uring iscsi luks nbd nfs null-aio null-co nvme nvme-io_uring parallels "
    "preallocate qcow qcow2 qed quorum raw rbd replication ssh throttle vdi vhdx "
    "virtio-blk-vfio-pci virtio-blk-vhost-user virtio-blk-vhost-vdpa vmdk vpc vvfat".split()))

ON_OFF_AUTO = Enum(("auto", "on", "off"))
PREALLOC = Enum(("off", "metadata", "falloc", "full"))

CACHE = members("*direct", "*no-flush", direct="bool", no_flush="bool")

_FILE = members("filename", "*pr-manager", "*locking", "*aio", "*aio-max-batch",
                "*drop-cache", "*x-check-cache-dropped", filename="str", pr_manager="str",
                locking=ON_OFF_AUTO, aio=Enum(("threads", "native", "io_uring")),
                aio_max_batch="int", drop_cache="bool", x_check_cache_dropped="bool")

#: BlockdevQcow2Encryption: the key secret of an AES or LUKS encrypted qcow2 image
_QCOW2_ENCRYPT = Union(members("format", format=Enum(("aes", "luks"))), "format", {
    "aes": members("*key-secret", key_secret="str"),
    "luks": members("*key-secret", key_secret="str")})

#: BlockdevOptions: the base, then per driver its members (others: none modelled)
BLOCKDEV_OPTIONS = Union(
    members("driver", "*node-name", "*discard", "*cache", "*read-only", "*auto-read-only",
            "*force-share", "*detect-zeroes", driver=DRIVERS, node_name="str",
            discard=Enum(("ignore", "unmap")), cache=CACHE, read_only="bool",
            auto_read_only="bool", force_share="bool",
            detect_zeroes=Enum(("off", "on", "unmap"))),
    "driver", {})
BLOCKDEV_REF = Alternate("BlockdevRef", BLOCKDEV_OPTIONS)
BLOCKDEV_REF_OR_NULL = Alternate("BlockdevRefOrNull", BLOCKDEV_OPTIONS, null=True)
BLOCKDEV_OPTIONS.variants.update({
    "file": _FILE,
    "raw": members("file", "*offset", "*size", file=BLOCKDEV_REF, offset="int", size="int"),
    "luks": members("file", "*key-secret", file=BLOCKDEV_REF, key_secret="str"),
    "qcow2": members("file", "*backing", "*lazy-refcounts", "*pass-discard-request",
                     "*pass-discard-snapshot", "*pass-discard-other", "*overlap-check",
                     "*cache-size", "*l2-cache-size", "*l2-cache-entry-size",
                     "*refcount-cache-size", "*cache-clean-interval", "*encrypt",
                     "*data-file", file=BLOCKDEV_REF, backing=BLOCKDEV_REF_OR_NULL,
                     lazy_refcounts="bool", pass_discard_request="bool",
                     pass_discard_snapshot="bool", pass_discard_other="bool",
                     overlap_check="any", cache_size="int", l2_cache_size="int",
                     l2_cache_entry_size="int", refcount_cache_size="int",
                     cache_clean_interval="int", encrypt=_QCOW2_ENCRYPT,
                     data_file=BLOCKDEV_REF),
})

_HASH = Enum(("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "ripemd160"))
#: QCryptoBlockCreateOptionsLUKS (without key-secret, which is optional for luks only)
_LUKS_CREATE = (("*cipher-alg", "*cipher-mode", "*ivgen-alg", "*ivgen-hash-alg", "*hash-alg",
                 "*iter-time"),
                dict(cipher_alg=Enum((
                    "aes-128", "aes-192", "aes-256", "des", "3des", "cast5-128",
                    "serpent-128", "serpent-192", "serpent-256", "twofish-128",
                    "twofish-192", "twofish-256", "sm4")),
                    cipher_mode=Enum(("ecb", "cbc", "xts", "ctr")),
                    ivgen_alg=Enum(("plain", "plain64", "essiv")), ivgen_hash_alg=_HASH,
                    hash_alg=_HASH, iter_time="int"))
#: QCryptoBlockCreateOptions: how blockdev-create encrypts a qcow2 image
_ENCRYPT_CREATE = Union(members("format", format=Enum(("qcow", "luks"))), "format", {
    "qcow": members("*key-secret", key_secret="str"),
    "luks": members("*key-secret", *_LUKS_CREATE[0], key_secret="str", **_LUKS_CREATE[1])})
#: QCryptoBlockAmendOptions: LUKS key slot changes
_ENCRYPT_AMEND = Union(members("format", format=Enum(("qcow", "luks"))), "format", {
    "qcow": Struct(),
    "luks": members("state", "*new-secret", "*old-secret", "*keyslot", "*iter-time", "*secret",
                    state=Enum(("active", "inactive")), new_secret="str", old_secret="str",
                    keyslot="int", iter_time="int", secret="str")})

CREATE_OPTIONS = Union(members("driver", driver=DRIVERS), "driver", {
    "raw": Struct(),
    "file": members("filename", "size", "*preallocation", "*nocow", "*extent-size-hint",
                    filename="str", size="int", preallocation=PREALLOC, nocow="bool",
                    extent_size_hint="int"),
    "qcow2": members("file", "*data-file", "*data-file-raw", "*extended-l2", "size",
                     "*version", "*backing-file", "*backing-fmt", "*encrypt",
                     "*cluster-size", "*preallocation", "*lazy-refcounts",
                     "*refcount-bits", "*compression-type", file=BLOCKDEV_REF,
                     data_file=BLOCKDEV_REF, data_file_raw="bool", extended_l2="bool",
                     size="int", version=Enum(("v2", "v3")), backing_file="str",
                     backing_fmt=DRIVERS, encrypt=_ENCRYPT_CREATE, cluster_size="int",
                     preallocation=PREALLOC, lazy_refcounts="bool", refcount_bits="int",
                     compression_type=Enum(("zlib", "zstd"))),
    "luks": members("*key-secret", *_LUKS_CREATE[0], "file", "size", "*preallocation",
                    key_secret="str", file=BLOCKDEV_REF, size="int", preallocation=PREALLOC,
                    **_LUKS_CREATE[1]),
})

AMEND_OPTIONS = Union(members("driver", driver=DRIVERS), "driver", {
    "raw": Struct(),
    "file": Struct(),
    "qcow2": members("*encrypt", encrypt=_ENCRYPT_AMEND),
    "luks": members("state", "*new-secret", "*old-secret", "*keyslot", "*iter-time", "*secret",
                    state=Enum(("active", "inactive")), new_secret="str", old_secret="str",
                    keyslot="int", iter_time="int", secret="str"),
})

_BITMAP = members("node", "name", node="str", name="str")

#: ObjectOptions: the types qemu-storage-daemon can create; only secret is modelled
OBJECT_OPTIONS = Union(
    members("qom-type", "id", qom_type=Enum((
        "authz-list", "authz-listfile", "authz-pam", "authz-simple", "can-bus",
        "colo-compare", "cryptodev-backend", "cryptodev-backend-builtin", "dbus-vmstate",
        "filter-buffer", "filter-dump", "filter-mirror", "filter-redirector",
        "filter-replay", "filter-rewriter", "input-barrier", "input-linux", "iothread",
        "main-loop", "memory-backend-epc", "memory-backend-file", "memory-backend-memfd",
        "memory-backend-ram", "pef-guest", "pr-manager-helper", "qtest", "rng-builtin",
        "rng-egd", "rng-random", "secret", "secret_keyring", "sev-guest",
        "thread-context", "s390-pv-guest", "throttle-group", "tls-creds-anon",
        "tls-creds-psk", "tls-creds-x509", "tls-cipher-suites", "x-remote-object",
        "x-vfio-user-server")), id="str"),
    "qom-type", {"secret": members("*loaded", "*format", "*keyid", "*iv", "*data", "*file",
                                   loaded="bool", format=Enum(("raw", "base64")),
                                   keyid="str", iv="str", data="str", file="str")})

#: command name -> argument type
ARGUMENTS: dict[str, Struct | Union] = {
    "qmp_capabilities": members("*enable", enable=List(Enum(("oob",)))),
    "query-version": Struct(),
    "query-commands": Struct(),
    "quit": Struct(),
    "blockdev-add": BLOCKDEV_OPTIONS,
    "blockdev-del": members("node-name", node_name="str"),
    "blockdev-create": members("job-id", "options", job_id="str", options=CREATE_OPTIONS),
    "x-blockdev-amend": members("job-id", "node-name", "options", "*force", job_id="str",
                                node_name="str", options=AMEND_OPTIONS, force="bool"),
    "query-jobs": Struct(),
    "job-dismiss": members("id", id="str"),
    "query-named-block-nodes": members("*flat", flat="bool"),
    "block_resize": members("*device", "*node-name", "size", device="str",
                            node_name="str", size="int"),
    "block-dirty-bitmap-add": members("node", "name", "*granularity", "*persistent",
                                      "*disabled", node="str", name="str",
                                      granularity="int", persistent="bool",
                                      disabled="bool"),
    "block-dirty-bitmap-remove": _BITMAP,
    "block-dirty-bitmap-clear": _BITMAP,
    "blockdev-snapshot-internal-sync": members("device", "name", device="str", name="str"),
    "object-add": OBJECT_OPTIONS,
    "object-del": members("id", id="str"),
    "human-monitor-command": members("command-line", "*cpu-index", command_line="str",
                                     cpu_index="int"),
}
