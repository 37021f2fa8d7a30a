/*
 * rtc.S — real-mode guest: the MC146818 CMOS RTC. Reads the date and time the way
 * a BIOS does (wait until no update is in progress, then the BCD registers), then
 * turns on the periodic interrupt (1024 Hz, IRQ8 on the slave 8259A, vector 0x70)
 * and halts until it has counted `wanted` of them. The ISR reads register C, which
 * acknowledges the RTC, and sends EOIs to both PICs. Prints the time, register C as
 * the ISR saw it and the count, then leaves through isa-debug-exit with status 1.
 *
 * Tests patch `wanted` (image offset 2).
 */

        .code16
        .text
        .globl  _start

        .set    RTC_INDEX, 0x70
        .set    RTC_DATA, 0x71
        .set    REG_A, 0x0a
        .set    REG_B, 0x0b
        .set    REG_C, 0x0c
        .set    CENTURY, 0x32
        .set    PIC1_CMD, 0x20
        .set    PIC1_DATA, 0x21
        .set    PIC2_CMD, 0xa0
        .set    PIC2_DATA, 0xa1
        .set    DEBUG_EXIT, 0xf4
        .set    IRQ8_VECTOR, 0x70

_start:
        jmp     main
wanted: .word   8                       /* periodic interrupts to count */

/* AL = CMOS register AL. */
cmos_read:
        out     %al, $RTC_INDEX
        in      $RTC_DATA, %al
        ret

/* Print CMOS register AL (BCD) as two digits. */
put_bcd:
        push    %ax
        call    cmos_read
        push    %ax
        shr     $4, %al
        add     $'0', %al
        call    putc
        pop     %ax
        and     $0x0f, %al
        add     $'0', %al
        call    putc
        pop     %ax
        ret

/* Print a separator character held in AH. */
put_sep:
        push    %ax
        mov     %ah, %al
        call    putc
        pop     %ax
        ret

main:
        cli
        cld
        xor     %ax, %ax
        mov     %ax, %ds
        call    uart_init

        movw    $isr, IRQ8_VECTOR * 4
        movw    %cs, IRQ8_VECTOR * 4 + 2

        mov     $0x11, %al              /* ICW1-4 as a BIOS: master 0x08, slave 0x70 */
        out     %al, $PIC1_CMD
        out     %al, $PIC2_CMD
        mov     $0x08, %al
        out     %al, $PIC1_DATA
        mov     $IRQ8_VECTOR, %al
        out     %al, $PIC2_DATA
        mov     $0x04, %al
        out     %al, $PIC1_DATA
        mov     $0x02, %al
        out     %al, $PIC2_DATA
        mov     $0x01, %al
        out     %al, $PIC1_DATA
        out     %al, $PIC2_DATA
        mov     $0xfb, %al              /* master: only the cascade (IRQ2) */
        out     %al, $PIC1_DATA
        mov     $0xfe, %al              /* slave: only IRQ8 */
        out     %al, $PIC2_DATA

1:      mov     $REG_A, %al             /* wait while an update is in progress (UIP) */
        call    cmos_read
        test    $0x80, %al
        jnz     1b

        mov     $msg_time, %si
        call    puts
        mov     $CENTURY, %al
        call    put_bcd
        mov     $0x09, %al              /* year */
        call    put_bcd
        mov     $'-', %ah
        call    put_sep
        mov     $0x08, %al              /* month */
        call    put_bcd
        call    put_sep
        mov     $0x07, %al              /* day of month */
        call    put_bcd
        mov     $' ', %ah
        call    put_sep
        mov     $0x04, %al              /* hours */
        call    put_bcd
        mov     $':', %ah
        call    put_sep
        mov     $0x02, %al              /* minutes */
        call    put_bcd
        call    put_sep
        mov     $0x00, %al              /* seconds */
        call    put_bcd
        call    crlf

        mov     $REG_B, %al             /* periodic interrupt on, 24-hour BCD */
        out     %al, $RTC_INDEX
        mov     $0x42, %al
        out     %al, $RTC_DATA

        sti
2:      hlt
        mov     ticks, %ax
        cmp     wanted, %ax
        jb      2b
        cli

        mov     $REG_B, %al             /* periodic interrupt off again */
        out     %al, $RTC_INDEX
        mov     $0x02, %al
        out     %al, $RTC_DATA

        mov     $msg_regc, %si
        call    puts
        mov     regc, %ax
        call    puthex
        mov     $msg_ticks, %si
        call    puts
        mov     ticks, %ax
        call    putdec
        call    crlf
        xor     %al, %al                /* status 1 */
        out     %al, $DEBUG_EXIT

isr:
        push    %ax
        mov     $REG_C, %al             /* reading C acknowledges the interrupt */
        out     %al, $RTC_INDEX
        in      $RTC_DATA, %al
        xor     %ah, %ah
        mov     %ax, %cs:regc
        incw    %cs:ticks
        mov     $0x20, %al              /* non-specific EOI, slave then master */
        out     %al, $PIC2_CMD
        out     %al, $PIC1_CMD
        pop     %ax
        iret

        .include "lib/uart16.inc"
        .include "lib/print16.inc"

ticks:  .word 0
regc:   .word 0
msg_time:  .asciz "RTC time "
msg_regc:  .asciz "register C in the ISR 0x"
msg_ticks: .asciz ", periodic interrupts "
