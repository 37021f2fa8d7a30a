#!/bin/sh
# Re-records the golden traces of real KVM (run from the repository root, as root, on a
# host with /dev/kvm; KVM tracepoints are captured where tracefs allows). A guest's own
# isa-debug-exit status is not a failure.
set -e
pm32="--mode pm32 --load 0x100000"
npx vmrr run guests/hello.bin --backend kvm --record traces/kvm/hello.vmrr
npx vmrr run guests/hello32.bin $pm32 --backend kvm --record traces/kvm/hello32.vmrr || [ $? -eq 67 ]
npx vmrr run guests/cpuid.bin $pm32 --backend kvm --record traces/kvm/cpuid.vmrr || [ $? -eq 1 ]
npx vmrr run guests/mmio.bin $pm32 --backend kvm --record traces/kvm/mmio.vmrr || [ $? -eq 1 ]
npx vmrr run guests/ept.bin $pm32 --backend kvm --record traces/kvm/ept.vmrr || [ $? -eq 1 ]
npx vmrr run guests/triplefault.bin $pm32 --backend kvm --record traces/kvm/triplefault.vmrr
printf 'hello vmrr\n' | npx vmrr run guests/echo.bin --backend kvm --record traces/kvm/echo.vmrr
