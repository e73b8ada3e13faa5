# D20: -t none: the data file child inherits O_DIRECT (alignment 4096, probed while empty)
qemu-img create -f qcow2 -o cluster_size=32768,extended_l2=on,data_file=img.data,data_file_raw=on img.qcow2 1049046
qemu-io -t none -f qcow2 -c 'write -P 0xa5 969728 79318' img.qcow2
