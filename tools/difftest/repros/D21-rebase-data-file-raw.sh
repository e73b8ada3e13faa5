# D21: no backing file for an image whose data file is raw
qemu-img create -f qcow2 -o data_file=img.data,data_file_raw=on img.qcow2 1M
qemu-img create -f qcow2 new.qcow2 1M
qemu-io -f qcow2 -c 'write -P 0x75 512k 8192' new.qcow2
qemu-img rebase -b new.qcow2 -F qcow2 img.qcow2
qemu-img rebase -u -b new.qcow2 -F qcow2 img.qcow2
