#!/bin/sh
# /init of skiff's default Linux guest (built by scripts/build-guest).
#
# Kernel command line switches (read from /proc/cmdline):
#   skiff.shell=1          give a shell on the console instead of powering off
#   skiff.mount=DEV[:FS]   mount DEV (e.g. /dev/vda, fs type FS or auto) on /mnt first
#   skiff.run=PATH         run PATH with sh before powering off: a file in the
#                          initramfs (a test's appended archive puts files in
#                          /tests), a file under /mnt, or a block device whose
#                          first MiB (NUL padding dropped) is the script
# Lines starting with "skiff-guest:" are for the host; tests match them.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp /run
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp

# Load the virtio drivers in the dependency order build-guest computed from
# depmod's modules.dep (busybox insmod does not resolve dependencies).
# A failure is reported, not fatal: a test that needs the module will say so.
while read -r module; do
  [ -n "$module" ] || continue
  insmod "/lib/modules/$(uname -r)/$module" 2>/tmp/insmod.err ||
    echo "skiff-guest: insmod $module failed: $(cat /tmp/insmod.err)"
done </etc/skiff-modules

cpus=$(grep -c '^processor' /proc/cpuinfo)
mem_kib=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)
echo "skiff-guest: booted $(uname -r), $cpus cpus, $((mem_kib / 1024)) MiB"

# Later switches win, like the kernel's own parameters.
shell=0 run='' mnt=''
# shellcheck disable=SC2013 # the command line is words, not lines
for arg in $(cat /proc/cmdline); do
  case "$arg" in
  skiff.shell=1) shell=1 ;;
  skiff.run=*) run=${arg#skiff.run=} ;;
  skiff.mount=*) mnt=${arg#skiff.mount=} ;;
  esac
done

if [ -n "$mnt" ]; then
  dev=${mnt%%:*} fs=auto
  [ "$dev" = "$mnt" ] || fs=${mnt#*:}
  mkdir -p /mnt
  mount -t "$fs" "$dev" /mnt || echo "skiff-guest: mount $dev ($fs) on /mnt failed"
fi

if [ -n "$run" ]; then
  script=$run
  if [ -b "$run" ]; then
    # A raw disk holding a script padded with NUL bytes to the sector size:
    # the first MiB, NULs dropped, is the script.
    script=/tmp/skiff-run.sh
    head -c 1048576 "$run" | tr -d '\000' >"$script"
  fi
  if [ -r "$script" ]; then
    echo "skiff-guest: running $run"
    sh "$script"
    echo "skiff-guest: $run exited $?"
  else
    echo "skiff-guest: skiff.run=$run not found"
  fi
fi

if [ "$shell" = 1 ]; then
  echo "skiff-guest: shell on the console; exit it to power off"
  setsid cttyhack sh
fi

sync
echo "skiff-guest: powering off"
poweroff -f
