#!/bin/sh
# Runs inside the default guest (tests/linux/test_guest.py
# runs_in_guest_script_with_virtio_modules_loaded): reports the CPU count and
# the loaded modules, and fails if a virtio driver /init should have loaded is
# missing, or if the virtio-rng device the host attached has no driver bound.
cpus=$(grep -c processor /proc/cpuinfo)
lsmod
loaded=$(lsmod | awk 'NR > 1 { print $1 }' | sort | tr '\n' ',')
missing=
for m in virtio virtio_ring virtio_pci virtio_blk virtio_net virtio_console virtio_rng \
  virtio_balloon vmw_vsock_virtio_transport; do
  case ",$loaded" in
  *",$m,"*) ;;
  *) missing="$missing$m," ;;
  esac
done
rng_bound=no
for dev in /sys/bus/virtio/drivers/virtio_rng/virtio*; do
  [ -e "$dev" ] && rng_bound=yes
done
if [ -z "$missing" ] && [ "$rng_bound" = yes ]; then
  echo "SKIFF-TEST-RESULT: pass cpus=$cpus rng_bound=$rng_bound modules=$loaded"
else
  echo "SKIFF-TEST-RESULT: fail cpus=$cpus rng_bound=$rng_bound missing=$missing"
fi
