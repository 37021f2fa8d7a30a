/*
 * echo.S — real-mode guest that reads the serial console by polling.
 *
 * Entered at its first byte with CS=DS=ES=SS=0, IP=SP=0x7c00, no BIOS.
 * Waits for LSR.DR, reads RBR and echoes the byte uppercased (a-z only),
 * until it reads a line end (LF, or CR as a raw terminal sends for Enter)
 * or 'q'; then it ends the line with CR LF and halts. Every byte it reads
 * is host input, so a recording of it replays only if that input is
 * delivered at the same virtual times.
 */

        .code16
        .text
        .globl  _start

_start:
        cli
        call    uart_init
next:   call    getc
        cmp     $'\n', %al
        je      done
        cmp     $'\r', %al
        je      done
        cmp     $'q', %al
        je      quit
        cmp     $'a', %al
        jb      1f
        cmp     $'z', %al
        ja      1f
        sub     $0x20, %al              /* a-z -> A-Z */
1:      call    putc
        jmp     next
quit:   mov     $'Q', %al
        call    putc
done:   mov     $'\r', %al
        call    putc
        mov     $'\n', %al
        call    putc
2:      cli
        hlt                             /* IF=0, so this ends the run */
        jmp     2b

        .include "lib/uart16.inc"

/* getc: wait for LSR.DR, return the received byte in AL. Clobbers DX. */
getc:
        mov     $UART_LSR, %dx
1:      in      %dx, %al
        test    $LSR_DR, %al
        jz      1b
        mov     $UART_RBR, %dx
        in      %dx, %al
        ret
