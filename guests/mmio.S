/*
 * mmio.S — MMIO, told by `vmrr explain`.
 *
 * Flat 32-bit protected mode at 0x100000. 0xfebf0000 is outside RAM and no memslot
 * covers it. The first access is an EPT_VIOLATION: KVM finds no memslot, so the
 * page is MMIO; it marks the EPT entry misconfigured, decodes the instruction and
 * returns to QEMU with KVM_EXIT_MMIO. Later accesses exit as EPT_MISCONFIG (49)
 * straight away. A read waits for QEMU's value and completes on the next KVM_RUN.
 * No device sits there, so QEMU drops the write and reads 0. The guest leaves
 * through isa-debug-exit (status 1).
 */

        .code32
        .text
        .globl  _start

        .set    DEBUG_EXIT, 0xf4
        .set    MMIO_ADDR,  0xfebf0000

_start:
        movl    $0x12345678, MMIO_ADDR      /* write: EPT_VIOLATION, then KVM_EXIT_MMIO */
        mov     MMIO_ADDR, %eax             /* read: EPT_MISCONFIG, then KVM_EXIT_MMIO */

        xor     %eax, %eax                  /* isa-debug-exit: status (0 << 1) | 1 */
        out     %eax, $DEBUG_EXIT
1:      cli
        hlt
        jmp     1b
