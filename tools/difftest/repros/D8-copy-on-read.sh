# D8: qemu-io -C copies read data (even zeroes without a backing file) into the image
qemu-img create -f qcow2 -o cluster_size=4096 img.qcow2 2M
qemu-io -C -f qcow2 -c 'read -P 0 650240 8192' img.qcow2
