# D10: what metadata reached the disk when qemu-io aborts
qemu-img create -f qcow2 -o extended_l2=on,cluster_size=32k img.qcow2 1M
qemu-io -c 'write -P 0xe4 0 4k' -c 'write -c -P 0xe5 64k 32k' -c abort img.qcow2
qemu-io -c 'read -P 0xe4 0 4k' img.qcow2
