# D5: a freed compressed cluster must not be reused by a later chunk of the same request
qemu-img create -f qcow2 -o cluster_size=32768,extended_l2=on img.qcow2 256k
qemu-io -c 'write -c -P 0xd3 128k 32k' img.qcow2
qemu-io -c 'write -P 0x6a 166k 1k' -c 'write -P 0xce 138k 64k' img.qcow2
