# D16: host cluster of a decompressed cluster: QEMU does not reuse it for the next write (seed 2044)
qemu-img create -f qcow2 -o cluster_size=2048 img.qcow2 528384
qemu-io -c 'write -c -P 0x25 280576 2048' -c 'write -P 0x9f 518144 1' img.qcow2
qemu-io -c 'write -P 0x22 147697 380687' -c 'write -P 0xdc 84k 512' img.qcow2
