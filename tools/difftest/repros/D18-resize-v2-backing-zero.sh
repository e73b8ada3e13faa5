# D18: resize of a v2 image with a backing file fails zeroing the new area
qemu-img create -q -f qcow2 base.qcow2 1M
qemu-img create -q -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 img.qcow2 512k
qemu-img resize img.qcow2 576k
