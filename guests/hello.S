/*
 * hello.S — real-mode guest with a polled 16550 UART driver.
 *
 * Entered at its first byte with CS=DS=ES=SS=0, IP=SP=0x7c00, no BIOS.
 * Every in/out below is an IO_INSTRUCTION exit handled by the userspace
 * serial model; the run ends at HLT with interrupts off.
 */

        .code16
        .text
        .globl  _start

_start:
        cli
        cld                             /* lodsb must walk forwards */
        call    uart_init
        mov     $msg, %si
        call    puts
1:      cli
        hlt                             /* IF=0, so this ends the run */
        jmp     1b                      /* only after an NMI: halt again */

        .include "lib/uart16.inc"

/* puts: send the NUL-terminated string at DS:SI. Leaves SI past the NUL. */
puts:
        push    %ax
1:      lodsb
        test    %al, %al
        jz      2f
        call    putc
        jmp     1b
2:      pop     %ax
        ret

msg:
        .asciz  "Hello from a real-mode guest, via a polled 16550 UART!\r\n"
