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

        /* COM1 register offsets from the base port */
        .set    COM1,     0x3f8
        .set    UART_THR, COM1 + 0      /* transmit holding (write), DLAB=0 */
        .set    UART_DLL, COM1 + 0      /* divisor latch low, DLAB=1 */
        .set    UART_IER, COM1 + 1      /* interrupt enable, DLAB=0 */
        .set    UART_DLM, COM1 + 1      /* divisor latch high, DLAB=1 */
        .set    UART_FCR, COM1 + 2      /* FIFO control (write) */
        .set    UART_LCR, COM1 + 3      /* line control */
        .set    UART_MCR, COM1 + 4      /* modem control */
        .set    UART_LSR, COM1 + 5      /* line status */

        .set    LCR_DLAB, 0x80
        .set    LCR_8N1,  0x03          /* 8 data bits, no parity, 1 stop */
        .set    FCR_INIT, 0x07          /* enable FIFOs, clear RX and TX */
        .set    MCR_INIT, 0x03          /* DTR | RTS */
        .set    LSR_THRE, 0x20          /* THR empty: room for one more byte */

_start:
        cli
        cld                             /* lodsb must walk forwards */
        call    uart_init
        mov     $msg, %si
        call    puts
1:      cli
        hlt                             /* IF=0, so this ends the run */
        jmp     1b                      /* only after an NMI: halt again */

/* Program COM1 for 115200 8N1 with FIFOs, no interrupts (we poll). */
uart_init:
        mov     $UART_IER, %dx
        xor     %al, %al                /* mask all UART interrupts */
        out     %al, %dx

        mov     $UART_LCR, %dx
        mov     $LCR_DLAB, %al          /* expose DLL/DLM at +0/+1 */
        out     %al, %dx
        mov     $UART_DLL, %dx
        mov     $1, %al                 /* divisor 1: 115200 baud */
        out     %al, %dx
        mov     $UART_DLM, %dx
        xor     %al, %al
        out     %al, %dx

        mov     $UART_LCR, %dx
        mov     $LCR_8N1, %al           /* also clears DLAB */
        out     %al, %dx

        mov     $UART_FCR, %dx
        mov     $FCR_INIT, %al
        out     %al, %dx

        mov     $UART_MCR, %dx
        mov     $MCR_INIT, %al
        out     %al, %dx
        ret

/* putc: send AL. Spins on LSR.THRE so we never overrun the transmitter.
 * Preserves every register except flags. */
putc:
        push    %ax
        push    %dx
        mov     %al, %ah                /* the poll reads LSR into AL */
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
