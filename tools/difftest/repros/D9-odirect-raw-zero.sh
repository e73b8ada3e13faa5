# D9: -t none (O_DIRECT): an unaligned zero write on raw is done as an aligned read-modify-write
qemu-img create -f raw img.raw 4M
qemu-io -f raw -c 'write -P 0x11 0 4M' -c 'discard 0 4M' img.raw
qemu-io -t none -f raw -c 'write -z -u 709051 1536' img.raw
