/*
 * lapic.S — flat 32-bit protected-mode guest: interrupts through the local APIC.
 *
 * Entered at 0x100000 with flat segments cached and IF = 0. It loads its own GDT, IDT
 * and stack, masks the 8259A pair, software-enables the LAPIC (spurious vector 0xff) and
 * takes three sources at once while halted between interrupts:
 *   - the LAPIC timer, periodic, divide by 1, every 1 ms     -> vector 0x30
 *   - the PIT through IOAPIC pin 2, edge, every 2 ms         -> vector 0x31
 *   - the RTC's 1024 Hz periodic interrupt through IOAPIC pin 8, level-triggered,
 *     so its EOI goes back to the IOAPIC (Remote IRR)        -> vector 0x32
 * Each ISR counts and writes the LAPIC's EOI register (the RTC's first reads register
 * C to lower its line). After `wanted` LAPIC timer ticks it masks everything, prints
 * the three counts on debugcon and leaves through isa-debug-exit with status 1.
 *
 * Tests patch `wanted` (image offset 4).
 */

        .code32
        .text
        .globl  _start

        .set    DEBUGCON, 0xe9
        .set    DEBUG_EXIT, 0xf4
        .set    LAPIC, 0xfee00000
        .set    LAPIC_EOI, LAPIC + 0xb0
        .set    LAPIC_SVR, LAPIC + 0xf0
        .set    LAPIC_LVTT, LAPIC + 0x320
        .set    LAPIC_TMICT, LAPIC + 0x380
        .set    LAPIC_TDCR, LAPIC + 0x3e0
        .set    IOAPIC, 0xfec00000
        .set    IOWIN, IOAPIC + 0x10
        .set    VEC_TIMER, 0x30
        .set    VEC_PIT, 0x31
        .set    VEC_RTC, 0x32
        .set    VEC_SPURIOUS, 0xff

_start:
        jmp     main                        /* two bytes, padded to 4 */
        .balign 4
wanted: .long   5                           /* LAPIC timer ticks to wait for */

/* IOAPIC register EAX := EDX (through IOREGSEL/IOWIN). */
ioapic_write:
        mov     %eax, IOAPIC
        mov     %edx, IOWIN
        ret

/* IDT gate for vector EAX -> handler EDX: a 32-bit interrupt gate, selector 0x08, DPL 0. */
set_gate:
        lea     idt(,%eax,8), %eax
        mov     %dx, (%eax)
        movw    $0x08, 2(%eax)
        movw    $0x8e00, 4(%eax)
        shr     $16, %edx
        mov     %dx, 6(%eax)
        ret

main:
        cld
        lgdt    gdt_desc
        ljmp    $0x08, $1f
1:      mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $stack_top, %esp            /* not below 1 MiB: a PC's BIOS area there is ROM */

        mov     $VEC_TIMER, %eax
        mov     $timer_isr, %edx
        call    set_gate
        mov     $VEC_PIT, %eax
        mov     $pit_isr, %edx
        call    set_gate
        mov     $VEC_RTC, %eax
        mov     $rtc_isr, %edx
        call    set_gate
        mov     $VEC_SPURIOUS, %eax
        mov     $spurious_isr, %edx
        call    set_gate
        lidt    idt_desc

        mov     $0xff, %al                  /* the 8259A pair: everything masked */
        out     %al, $0x21
        out     %al, $0xa1

        movl    $(0x100 | VEC_SPURIOUS), LAPIC_SVR  /* software enable */
        movl    $0xb, LAPIC_TDCR                    /* divide by 1 */
        movl    $(0x20000 | VEC_TIMER), LAPIC_LVTT  /* periodic */

        mov     $0x14, %eax                 /* pin 2 (PIT): edge, fixed, to APIC 0 */
        mov     $VEC_PIT, %edx
        call    ioapic_write
        mov     $0x15, %eax
        xor     %edx, %edx
        call    ioapic_write
        mov     $0x20, %eax                 /* pin 8 (RTC): level-triggered */
        mov     $(0x8000 | VEC_RTC), %edx
        call    ioapic_write
        mov     $0x21, %eax
        xor     %edx, %edx
        call    ioapic_write

        mov     $0x34, %al                  /* PIT channel 0: mode 2, 2386 clocks = 2 ms */
        out     %al, $0x43
        mov     $(2386 & 0xff), %al
        out     %al, $0x40
        mov     $(2386 >> 8), %al
        out     %al, $0x40

        mov     $0x0b, %al                  /* RTC: periodic interrupt on (1024 Hz), 24-hour BCD */
        out     %al, $0x70
        mov     $0x42, %al
        out     %al, $0x71

        movl    $1000000, LAPIC_TMICT       /* starts the LAPIC timer: 1 ms */

        sti
2:      hlt
        mov     timer_ticks, %eax
        cmp     wanted, %eax
        jb      2b
        cli

        movl    $0, LAPIC_TMICT             /* stop the LAPIC timer */
        mov     $0x10, %eax                 /* mask pins 2 and 8 */
        mov     $0x10000, %edx
        call    ioapic_write
        mov     $0x20, %eax
        call    ioapic_write

        mov     $msg_timer, %esi
        call    puts
        mov     timer_ticks, %eax
        call    print_dec
        mov     $msg_pit, %esi
        call    puts
        mov     pit_ticks, %eax
        call    print_dec
        mov     $msg_rtc, %esi
        call    puts
        mov     rtc_ticks, %eax
        call    print_dec
        mov     $'\n', %al
        out     %al, $DEBUGCON
        xor     %al, %al                    /* status 1 */
        out     %al, $DEBUG_EXIT

timer_isr:
        incl    timer_ticks
        movl    $0, LAPIC_EOI
        iret

pit_isr:
        incl    pit_ticks
        movl    $0, LAPIC_EOI
        iret

rtc_isr:
        push    %eax
        mov     $0x0c, %al                  /* reading register C lowers IRQ8 */
        out     %al, $0x70
        in      $0x71, %al
        pop     %eax
        incl    rtc_ticks
        movl    $0, LAPIC_EOI               /* level: the EOI clears the pin's Remote IRR */
        iret

spurious_isr:
        iret                                /* no EOI for the spurious vector */

/* puts: the NUL-terminated string at ESI to debugcon. */
puts:
        push    %eax
1:      lodsb
        test    %al, %al
        jz      2f
        out     %al, $DEBUGCON
        jmp     1b
2:      pop     %eax
        ret

        .include "lib/print_dec32.inc"

        .balign 8
gdt:    .quad   0
        .quad   0x00cf9a000000ffff          /* 0x08: flat 32-bit code */
        .quad   0x00cf92000000ffff          /* 0x10: flat data */
gdt_desc:
        .word   3 * 8 - 1
        .long   gdt
idt_desc:
        .word   256 * 8 - 1
        .long   idt

timer_ticks: .long 0
pit_ticks:   .long 0
rtc_ticks:   .long 0
msg_timer: .asciz "LAPIC timer ticks "
msg_pit:   .asciz ", PIT via IOAPIC pin 2 "
msg_rtc:   .asciz ", RTC via IOAPIC pin 8 (level) "

        .balign 8
idt:    .fill   256 * 8, 1, 0
stack:  .fill   1024, 1, 0
stack_top:
