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

        .set    COM1,     0x3f8
        .set    UART_RBR, COM1 + 0      /* receive buffer (read), DLAB=0 */
        .set    UART_THR, COM1 + 0      /* transmit holding (write), DLAB=0 */
        .set    UART_DLL, COM1 + 0      /* divisor latch low, DLAB=1 */
        .set    UART_IER, COM1 + 1      /* interrupt enable, DLAB=0 */
        .set    UART_DLM, COM1 + 1      /* divisor latch high, DLAB=1 */
        .set    UART_FCR, COM1 + 2      /* FIFO control (write) */
        .set    UART_LCR, COM1 + 3      /* line control */
        .set    UART_MCR, COM1 + 4      /* modem control */
        .set    UART_LSR, COM1 + 5      /* line status */

        .set    LCR_DLAB, 0x80
        .set    LCR_8N1,  0x03
        .set    FCR_INIT, 0x07          /* enable FIFOs, clear RX and TX */
        .set    MCR_INIT, 0x03          /* DTR | RTS */
        .set    LSR_DR,   0x01          /* a received byte is waiting in RBR */
        .set    LSR_THRE, 0x20          /* THR empty: room for one more byte */

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

/* Program COM1 for 115200 8N1 with FIFOs, no interrupts (we poll). */
uart_init:
        mov     $UART_IER, %dx
        xor     %al, %al
        out     %al, %dx
        mov     $UART_LCR, %dx
        mov     $LCR_DLAB, %al
        out     %al, %dx
        mov     $UART_DLL, %dx
        mov     $1, %al
        out     %al, %dx
        mov     $UART_DLM, %dx
        xor     %al, %al
        out     %al, %dx
        mov     $UART_LCR, %dx
        mov     $LCR_8N1, %al
        out     %al, %dx
        mov     $UART_FCR, %dx
        mov     $FCR_INIT, %al
        out     %al, %dx
        mov     $UART_MCR, %dx
        mov     $MCR_INIT, %al
        out     %al, %dx
        ret

/* getc: wait for LSR.DR, return the received byte in AL. Clobbers DX. */
getc:
        mov     $UART_LSR, %dx
1:      in      %dx, %al
        test    $LSR_DR, %al
        jz      1b
        mov     $UART_RBR, %dx
        in      %dx, %al
        ret

/* putc: send AL once LSR.THRE says THR is empty. Preserves AX and DX. */
putc:
        push    %ax
        push    %dx
        mov     %al, %ah
        mov     $UART_LSR, %dx
1:      in      %dx, %al
        test    $LSR_THRE, %al
        jz      1b
        mov     %ah, %al
        mov     $UART_THR, %dx
        out     %al, %dx
        pop     %dx
        pop     %ax
        ret
