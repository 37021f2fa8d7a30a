/*
 * triplefault.S — a triple fault ends the run (KVM_EXIT_SHUTDOWN).
 *
 * Entered in flat 32-bit protected mode at 0x100000. Prints one line, loads
 * an empty IDT (limit 0) and executes ud2: #UD finds no gate (#GP), #GP finds
 * no gate (#DF), #DF finds no gate: shutdown. The expected outcome is the
 * run ending with reason "shutdown" (on QEMU with -no-reboot: QEMU exits, no
 * isa-debug-exit status). If the CPU carries on instead, it says so and exits
 * through isa-debug-exit with status 3 (one failure).
 */

        .code32
        .text
        .globl  _start
_start: jmp     main

        .include "lib/serial.inc"
        .include "lib/report.inc"

main:
        mov     $0x190000, %esp                 /* the entry stack is not ours to keep */
        call    serial_init
        mov     $msg_start, %esi
        call    serial_puts
        lidt    empty_idt
        ud2
        CHECK   "triple_fault"                  /* only if the CPU did not shut down */
        EXPECT  "still running", $1, $0
        END_CHECK
        jmp     report_done

        .pushsection .text, 1
        .balign 4
        .word   0
empty_idt:
        .word   0                               /* limit 0: no gate is inside it */
        .long   0
msg_start:
        .ascii  "INFO triple_fault: empty IDT, then ud2; the run must end in shutdown"
        .byte   13, 10, 0
        .popsection
