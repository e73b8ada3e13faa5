# D10: lazy refcounts + abort: L2 on disk, refcounts not; reopening repairs
qemu-img create -f qcow2 -o lazy_refcounts=on,cluster_size=64k img.qcow2 1M
qemu-io -c 'write -P 0xe1 0 64k' -c 'write -P 0xe2 200k 8k' -c abort img.qcow2
qemu-img check img.qcow2
qemu-io -c 'read -P 0xe1 0 64k' img.qcow2
