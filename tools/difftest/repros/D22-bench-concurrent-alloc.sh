# D22 (open): bench -w with several requests in flight that yield before allocating
qemu-img create -q -f qcow2 -o cluster_size=4096 img.qcow2 1M
qemu-io -c 'write 0 4k' img.qcow2
qemu-img snapshot -c s1 img.qcow2
qemu-img bench -c 4 -s 4096 -o 139264 -w -d 2 -f qcow2 img.qcow2
