# D9: -t none (O_DIRECT) pads the compressed cluster's write to the host alignment
qemu-img create -f qcow2 img.qcow2 1M
qemu-io -t none -c 'write -c -P 0xc1 0 64k' img.qcow2
