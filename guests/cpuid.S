/*
 * cpuid.S — one CPUID, told by `vmrr explain`.
 *
 * Flat 32-bit protected mode at 0x100000. CPUID leaf 0 returns the highest basic
 * leaf in EAX and the vendor string in EBX, EDX, ECX. CPUID always causes a VM exit
 * in VMX non-root mode (basic exit reason 10); KVM answers it in the kernel from the
 * table QEMU gave it with KVM_SET_CPUID2, so QEMU never sees this exit. The guest
 * prints the vendor on debugcon and leaves through isa-debug-exit (status 1).
 */

        .code32
        .text
        .globl  _start

        .set    DEBUGCON,   0xe9
        .set    DEBUG_EXIT, 0xf4

_start:
        cld
        xor     %eax, %eax
        cpuid                               /* the exit this guest is about */
        mov     %ebx, vendor
        mov     %edx, vendor + 4
        mov     %ecx, vendor + 8

        mov     $DEBUGCON, %dx
        mov     $msg, %esi
        mov     $msg_len, %ecx
        rep outsb

        xor     %eax, %eax                  /* isa-debug-exit: status (0 << 1) | 1 */
        out     %eax, $DEBUG_EXIT
1:      cli
        hlt
        jmp     1b

msg:    .ascii  "CPUID vendor: "
vendor: .ascii  "????????????"
        .ascii  "\n"
        .set    msg_len, . - msg
