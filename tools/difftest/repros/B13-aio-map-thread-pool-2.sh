# B13: map while aio writes are in flight; QEMU's answer depends on thread-pool timing
qemu-img create -q -f qcow2 -o cluster_size=4096 img.qcow2 81920
qemu-io -c 'write -P 199 69632 11264' img.qcow2
qemu-io -f qcow2 -c 'aio_write -q -P 145 68096 4096' -c 'aio_write -q -P 201 46080 9216' -c 'read -q 50688 1024' -c map img.qcow2
