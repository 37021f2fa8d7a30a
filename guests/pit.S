/*
 * pit.S — real-mode guest: the 8254's channel 0 as a periodic timer on IRQ0,
 * through the 8259A pair, with the vCPU halted between ticks.
 *
 * Programs the PICs as a PC BIOS does (master vectors 0x08-0x0f, slave 0x70-0x77,
 * only IRQ0 unmasked), channel 0 in mode 2 (rate generator) with the reload value
 * below, then halts with interrupts on. The ISR counts ticks and sends a
 * non-specific EOI; after each wake-up the main line prints the count. Once
 * `wanted` ticks have come, it makes an interrupt wait for the window: with IF = 0 it
 * speeds the PIT up (reload 100) and spins past a tick, then STI lets the pending IRQ0
 * in after the instruction that follows. It latches channel 0's count, prints it and
 * leaves through isa-debug-exit with status 1.
 *
 * Tests patch `reload` (image offset 2) and `wanted` (offset 4).
 */

        .code16
        .text
        .globl  _start

        .set    PIC1_CMD, 0x20
        .set    PIC1_DATA, 0x21
        .set    PIC2_CMD, 0xa0
        .set    PIC2_DATA, 0xa1
        .set    PIT_CH0, 0x40
        .set    PIT_MODE, 0x43
        .set    DEBUG_EXIT, 0xf4
        .set    IRQ0_VECTOR, 0x08

_start:
        jmp     main                    /* two bytes: the parameters follow at offset 2 */
reload: .word   11932                   /* PIT input clocks per tick: 10 ms at 1.193182 MHz */
wanted: .word   5                       /* ticks to count */

main:
        cli
        cld
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %es
        call    uart_init

        movw    $isr, IRQ0_VECTOR * 4   /* the IVT entry for IRQ0 */
        movw    %cs, IRQ0_VECTOR * 4 + 2

        mov     $0x11, %al              /* ICW1: edge, cascade, ICW4 follows */
        out     %al, $PIC1_CMD
        out     %al, $PIC2_CMD
        mov     $IRQ0_VECTOR, %al       /* ICW2: vector bases */
        out     %al, $PIC1_DATA
        mov     $0x70, %al
        out     %al, $PIC2_DATA
        mov     $0x04, %al              /* ICW3: slave on IRQ2 */
        out     %al, $PIC1_DATA
        mov     $0x02, %al
        out     %al, $PIC2_DATA
        mov     $0x01, %al              /* ICW4: 8086 mode, normal EOI */
        out     %al, $PIC1_DATA
        out     %al, $PIC2_DATA
        mov     $0xfe, %al              /* OCW1: only IRQ0 */
        out     %al, $PIC1_DATA
        mov     $0xff, %al
        out     %al, $PIC2_DATA

        mov     $0x34, %al              /* channel 0, lobyte/hibyte, mode 2, binary */
        out     %al, $PIT_MODE
        mov     reload, %ax
        out     %al, $PIT_CH0
        mov     %ah, %al
        out     %al, $PIT_CH0

        mov     $msg_start, %si
        call    puts
        mov     reload, %ax
        call    putdec
        call    crlf

        sti
1:      hlt                             /* woken by IRQ0; the ISR has run */
        incw    wakeups
        mov     $msg_tick, %si
        call    puts
        mov     ticks, %ax
        call    putdec
        call    crlf
        cmp     wanted, %ax
        jb      1b

        cli
        mov     $0x34, %al              /* 100 PIT clocks: a tick every 84 us */
        out     %al, $PIT_MODE
        mov     $100, %al
        out     %al, $PIT_CH0
        xor     %al, %al
        out     %al, $PIT_CH0
        mov     ticks, %dx
        mov     $2, %bx                 /* 2 x 65536 LOOPs: longer than one tick at any icount shift */
2:      xor     %cx, %cx
3:      loop    3b
        dec     %bx
        jnz     2b
        sti                             /* IRQ0 has been waiting: it comes after the NOP (STI's shadow) */
        nop
        cli
        mov     $msg_window, %si
        call    puts
        mov     ticks, %ax
        sub     %dx, %ax
        call    putdec
        call    crlf

        mov     $0x00, %al              /* latch channel 0's count */
        out     %al, $PIT_MODE
        in      $PIT_CH0, %al
        mov     %al, %bl
        in      $PIT_CH0, %al
        mov     %al, %bh
        mov     $msg_done, %si
        call    puts
        mov     ticks, %ax
        call    putdec
        mov     $msg_wakeups, %si
        call    puts
        mov     wakeups, %ax
        call    putdec
        mov     $msg_count, %si
        call    puts
        mov     %bx, %ax
        call    puthex
        call    crlf
        xor     %al, %al                /* status (0 << 1) | 1 = 1 */
        out     %al, $DEBUG_EXIT

isr:
        incw    %cs:ticks
        push    %ax
        mov     $0x20, %al              /* OCW2: non-specific EOI */
        out     %al, $PIC1_CMD
        pop     %ax
        iret

        .include "lib/uart16.inc"
        .include "lib/print16.inc"

ticks:    .word 0
wakeups:  .word 0
msg_start:   .asciz "PIT channel 0, mode 2, reload "
msg_tick:    .asciz "tick "
msg_window:  .asciz "ticks taken after the spin with IF=0: "
msg_done:    .asciz "done: ticks "
msg_wakeups: .asciz ", wakeups "
msg_count:   .asciz ", count 0x"
