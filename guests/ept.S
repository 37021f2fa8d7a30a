/*
 * ept.S — first-touch EPT faults, told by `vmrr explain`.
 *
 * Flat 32-bit protected mode at 0x100000. KVM fills the EPT on demand: the first
 * access to each guest-physical page is an EPT_VIOLATION (basic exit reason 48)
 * whose qualification says read, write or fetch; KVM finds the page in a memslot,
 * maps it and re-enters the guest at the same instruction, all in the kernel. The
 * guest touches one page of each kind, then the first again (no exit this time),
 * and leaves through isa-debug-exit (status 1).
 */

        .code32
        .text
        .globl  _start

        .set    DEBUG_EXIT, 0xf4

_start:                                     /* fetching this page is the first fault */
        mov     data_read, %eax             /* a data read: page 0x101000 */
        movl    $1, data_write              /* a data write: page 0x102000 */
        call    far_code                    /* the return address: the stack page 0xff000; then a fetch: page 0x103000 */
        mov     data_read + 4, %eax         /* page 0x101000 again: mapped, no exit */

        xor     %eax, %eax                  /* isa-debug-exit: status (0 << 1) | 1 */
        out     %eax, $DEBUG_EXIT
1:      cli
        hlt
        jmp     1b

        .balign 0x1000
data_read:
        .long   0x11111111, 0x22222222

        .balign 0x1000
data_write:
        .long   0

        .balign 0x1000
far_code:
        ret
