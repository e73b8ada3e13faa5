# D19: commit into an image with an external data file
qemu-img create -f qcow2 -o data_file=img.data img.qcow2 1M
qemu-img create -f qcow2 -b img.qcow2 -F qcow2 ov.qcow2
qemu-io -f qcow2 -c 'write -P 0x96 0 32768' ov.qcow2
qemu-img commit ov.qcow2
