/*
 * hello32.S — flat 32-bit protected-mode guest.
 *
 * Entered at its first byte (0x100000) with flat 32-bit segments already
 * loaded by the VMM, ESP=0x100000 (stack grows down below the image), IF=0.
 * No GDT exists in memory, so segment registers must not be reloaded.
 *
 * It shows the three ways this guest leaves the vCPU:
 *   - port I/O to debugcon (0xe9), including a rep-prefixed string OUTS;
 *   - MMIO to an unassigned address (an EPT violation that KVM hands to
 *     userspace as KVM_EXIT_MMIO);
 *   - isa-debug-exit (0xf4), which ends the run.
 */

        .code32
        .text
        .globl  _start

        .set    DEBUGCON,   0xe9
        .set    DEBUG_EXIT, 0xf4
        .set    MMIO_ADDR,  0xfebf0000      /* outside RAM, nothing mapped */
        .set    EXIT_CODE,  0x21            /* status (0x21 << 1) | 1 = 0x43 = 67 */

_start:
        cld                                 /* string ops walk forwards */

        /* Banner via one rep outsb: a single string-I/O instruction, one exit per byte. */
        mov     $banner, %esi
        mov     $banner_len, %ecx
        call    write

        /* fib(20), iteratively: after n steps EAX = F(n), EDX = F(n+1). */
        xor     %eax, %eax
        mov     $1, %edx
        mov     $20, %ecx
1:      lea     (%eax,%edx), %ebx
        mov     %edx, %eax
        mov     %ebx, %edx
        loop    1b
        push    %eax
        mov     $fib_msg, %esi
        mov     $fib_msg_len, %ecx
        call    write
        pop     %eax
        call    print_dec
        call    newline

        /* Checksum of the banner: s = (s * 31 + byte) mod 65521, then mixed
         * with shifts. Exercises lodsb/movzx/mul/div/shl/shr/xor/loop. */
        mov     $banner, %esi
        mov     $banner_len, %ecx
        mov     $31, %edi
        xor     %ebx, %ebx
2:      lodsb
        movzbl  %al, %ebp
        mov     %ebx, %eax
        mul     %edi                        /* EDX:EAX = s * 31 */
        add     %ebp, %eax
        adc     $0, %edx
        mov     $65521, %ebx
        div     %ebx                        /* EDX = remainder */
        mov     %edx, %ebx
        loop    2b
        mov     %ebx, %eax                  /* x ^= x << 5; x ^= x >> 7 */
        shl     $5, %eax
        xor     %eax, %ebx
        mov     %ebx, %eax
        shr     $7, %eax
        xor     %eax, %ebx
        mov     $sum_msg, %esi
        mov     $sum_msg_len, %ecx
        call    write
        mov     %ebx, %eax
        call    print_dec
        call    newline

        /* Unassigned MMIO: the write is dropped, the reads return zeros.
         * Each access is its own exit to userspace. */
        movl    $0xdeadbeef, MMIO_ADDR
        mov     MMIO_ADDR, %ebx             /* 32-bit read */
        movzbl  MMIO_ADDR, %edi             /* 8-bit read */

        mov     $mmio_msg, %esi
        mov     $mmio_msg_len, %ecx
        call    write
        mov     %ebx, %eax
        mov     $8, %ecx
        call    print_hex
        call    newline

        mov     $mmio8_msg, %esi
        mov     $mmio8_msg_len, %ecx
        call    write
        mov     %edi, %eax
        mov     $2, %ecx
        call    print_hex
        call    newline

        /* isa-debug-exit: a 32-bit out, as with iosize=4 in QEMU. */
        mov     $EXIT_CODE, %eax
        out     %eax, $DEBUG_EXIT
3:      cli                                 /* only if no exit device */
        hlt
        jmp     3b

/* write: send ECX bytes at ESI to debugcon. Clobbers ESI, ECX. */
write:
        push    %edx
        mov     $DEBUGCON, %dx
        rep outsb
        pop     %edx
        ret

newline:
        push    %eax
        mov     $'\n', %al
        out     %al, $DEBUGCON
        pop     %eax
        ret

        .include "lib/print_dec32.inc"

/* print_hex: the low ECX (1..8) nibbles of EAX, lower-case, zero-padded.
 * Shift the wanted digits to the top, then rotate one nibble in at a time.
 * Clobbers EAX, ECX. */
print_hex:
        push    %edx
        mov     %eax, %edx
        push    %ecx
        neg     %ecx
        lea     8(%ecx), %ecx               /* CL = 4 * (8 - digits) */
        shl     $2, %ecx
        shl     %cl, %edx
        pop     %ecx
1:      rol     $4, %edx
        mov     %dl, %al
        and     $0x0f, %al
        cmp     $10, %al
        jb      2f
        add     $('a' - '0' - 10), %al
2:      add     $'0', %al
        out     %al, $DEBUGCON
        dec     %ecx
        jnz     1b
        pop     %edx
        ret

banner:
        .ascii  "Hello from 32-bit protected mode, via debugcon!\n"
        .set    banner_len, . - banner
fib_msg:
        .ascii  "fib(20) = "
        .set    fib_msg_len, . - fib_msg
sum_msg:
        .ascii  "checksum = "
        .set    sum_msg_len, . - sum_msg
mmio_msg:
        .ascii  "mmio read: 0x"
        .set    mmio_msg_len, . - mmio_msg
mmio8_msg:
        .ascii  "mmio read8: 0x"
        .set    mmio8_msg_len, . - mmio8_msg
