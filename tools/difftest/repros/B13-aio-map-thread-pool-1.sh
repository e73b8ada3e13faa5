# B13: map while aio writes are in flight; QEMU's answer depends on thread-pool timing
qemu-img create -q -f qcow2 -o cluster_size=65536 b.qcow2 92160
qemu-io -c 'write -P 0x11 0 46080' b.qcow2
qemu-img create -q -f qcow2 -o cluster_size=2048 -b b.qcow2 -F qcow2 img.qcow2 92160
qemu-io -c 'write -P 176 84992 4608' -c 'write -P 69 44544 3584' -c 'discard 65536 2048' img.qcow2
qemu-io -f qcow2 -c 'aio_write -q -P 82 89600 2560' -c 'aio_write -q -P 178 34304 2048' -c map img.qcow2
