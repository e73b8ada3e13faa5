# D24: copy-on-read on extended L2 goes past the request and aborts QEMU
qemu-img create -q -f qcow2 -o cluster_size=65536,extended_l2=on img.qcow2 256k
qemu-io -c 'write -P 0xc9 40k 2k' img.qcow2
qemu-io -C -c 'read -P 0 0 40k' img.qcow2
qemu-io -C -c 'read -P 0 12288 4k' img.qcow2
qemu-io -C -c 'read -P 0 44k 4k' img.qcow2
qemu-io -C -c 'read -P 0 128k 4k' -c 'read 0 64k' img.qcow2
