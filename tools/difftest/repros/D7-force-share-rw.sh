# D7: -U needs a read-only image
qemu-img create -f qcow2 img.qcow2 1M
qemu-io -U -c 'write 0 1k' img.qcow2
