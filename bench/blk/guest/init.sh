#!/bin/sh
# /init of the PV block benchmark guest (bench/blk). Prints the boot marker, loads xen-blkfront,
# waits for /dev/xvda, reports how blkfront connected (features, queues) and runs fio's four jobs
# (/etc/blkbench.fio) on the disk, printing fio's terse lines, then powers off. The kernel command
# line may carry `blkbench.runtime=SECONDS` and `blkbench.ramp=SECONDS` (per job).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "OXEN-GUEST-UP"
runtime=8 ramp=2
# shellcheck disable=SC2013  # the command line is one line of words
for word in $(cat /proc/cmdline); do
  case $word in
    blkbench.runtime=*) runtime=${word#*=} ;;
    blkbench.ramp=*) ramp=${word#*=} ;;
  esac
done
modprobe xen-blkfront || echo "BLKBENCH-ERROR cannot load xen-blkfront"
i=0
while [ ! -b /dev/xvda ] && [ $i -lt 300 ]; do
  sleep 0.1
  i=$((i + 1))
done
if [ -b /dev/xvda ]; then
  # blkfront logs the negotiated features once the device is connected.
  dmesg | grep -E 'blkfront|xvda' | sed 's/^\[[^]]*\] */BLKBENCH-INFO dmesg: /'
  echo "BLKBENCH-INFO queues=$(find /sys/block/xvda/mq -mindepth 1 -maxdepth 1 | wc -l)" \
    "max_sectors_kb=$(cat /sys/block/xvda/queue/max_sectors_kb)" \
    "max_segments=$(cat /sys/block/xvda/queue/max_segments)" \
    "nr_requests=$(cat /sys/block/xvda/queue/nr_requests)" \
    "size_sectors=$(cat /sys/block/xvda/size)"
  BLK_FILE=/dev/xvda BLK_DIRECT=1 BLK_RUNTIME=$runtime BLK_RAMP=$ramp \
    fio --output-format=terse --terse-version=3 --eta=never /etc/blkbench.fio >/tmp/fio.out 2>&1 ||
    echo "BLKBENCH-ERROR fio exited with status $?"
  sed 's/^/BLKBENCH-FIO /' /tmp/fio.out
  # Grants the backend did not give back, I/O errors: anything that would explain a slow side.
  dmesg | grep -iE 'still in use|leak|I/O error|blkfront.*(fail|err)' | head -n 5 |
    sed 's/^\[[^]]*\] */BLKBENCH-INFO after fio: /'
  echo "BLKBENCH done"
else
  echo "BLKBENCH-ERROR no /dev/xvda after 30 s"
  dmesg | tail -n 20 | sed 's/^/BLKBENCH-DMESG: /'
fi
echo "BLKBENCH-END"
poweroff -f
sleep 30
echo "BLKBENCH-ERROR still running after poweroff"
