/*
 * faults.S — exceptions at ring 0: which vector, which error code, and which
 * EIP the CPU pushes (the faulting instruction for a fault, the next one for
 * a trap), for #DE #DB #BP #OF #BR #UD #NM #GP #SS #NP #DF #TS.
 *
 * Entered in flat 32-bit protected mode at 0x100000 (memory map in
 * lib/system.inc). Extra GDT entries give small, read-only, expand-down and
 * not-present segments to fault on.
 *
 * Each check prints PASS/FAIL on COM1; the run ends with DONE and an exit
 * through isa-debug-exit (status 1 when every check passed).
 */

        .code32
        .text
        .globl  _start
_start: jmp     main

        .include "lib/serial.inc"
        .include "lib/report.inc"
        .include "lib/system.inc"

        .set    SMALL_DS,   FREE_SEL + 0x00 /* data, base SMALL_BASE, limit 0xfff */
        .set    ABSENT_DS,  FREE_SEL + 0x08 /* data, not present */
        .set    SMALL_SS,   FREE_SEL + 0x10 /* data, base STACK_BASE, limit 0xfff */
        .set    RO_DS,      FREE_SEL + 0x18 /* flat, read-only */
        .set    DOWN_DS,    FREE_SEL + 0x20 /* expand-down, limit 0xfff: offsets 0x1000-0xffffffff */
        .set    ABSENT_CS,  FREE_SEL + 0x28 /* code, not present */
        .set    BEYOND_GDT, 0x100           /* past the GDT limit (16 entries) */

        .set    SMALL_BASE, 0x1c0000
        .set    STACK_BASE, 0x1d0000

        .set    VEC_GP,     13
        .set    VEC_ABSENT, 0x40            /* an IDT vector with a not-present gate */
        .set    GATE_ABSENT, GATE_INT0 & 0x7f  /* a valid interrupt gate with P clear */
        .set    CR0_MP,     1 << 1
        .set    CR0_TS,     1 << 3
        .set    DR6_BS,     1 << 14
        .set    EFLAGS_NT,  1 << 14

/* Expect exception `vec` with error code `err` at `insn` (a label): the
 * common tail of most checks below. */
.macro  EXPECT_EXC name, vec, err, eip
        CHECK   "\name"
        EXPECT  "vector", exc_vec, $(\vec)
        EXPECT  "error", exc_err, $(\err)
        EXPECT  "eip", exc_eip, $(\eip)
        END_CHECK
.endm

main:
        mov     $KSTACK_TOP, %esp
        call    sys_init

        mov     $VEC_ABSENT, %ebx
        mov     $exc_stub_0, %eax               /* never reached: the gate is not present */
        mov     $GATE_ABSENT, %edx
        call    idt_set

        mov     $SMALL_DS, %eax
        mov     $SMALL_BASE, %ebx
        mov     $0xfff, %ecx
        mov     $0x0492, %edx                   /* P, DPL 0, data read/write; D/B=1, byte granular */
        call    gdt_set
        mov     $ABSENT_DS, %eax
        mov     $0x0412, %edx                   /* as above with P clear */
        call    gdt_set
        mov     $SMALL_SS, %eax
        mov     $STACK_BASE, %ebx
        mov     $0x0492, %edx
        call    gdt_set
        mov     $RO_DS, %eax
        xor     %ebx, %ebx
        mov     $0xfffff, %ecx
        mov     $0x0c90, %edx                   /* data read-only; 4 KiB granular, 32-bit */
        call    gdt_set
        mov     $DOWN_DS, %eax
        mov     $SMALL_BASE, %ebx
        mov     $0xfff, %ecx
        mov     $0x0496, %edx                   /* data read/write expand-down; B=1 */
        call    gdt_set

        mov     $ABSENT_CS, %eax
        xor     %ebx, %ebx
        mov     $0xfffff, %ecx
        mov     $0x0c1a, %edx                   /* code exec/read, P clear; 4 KiB granular, 32-bit */
        call    gdt_set

        movl    $0x5e6b0ff5, SMALL_BASE + 0xffc /* seen through SMALL_DS at offset 0xffc */
        movl    $0x0d0e0f10, SMALL_BASE + 0x2000

/* #DE: divide by zero. A fault: EIP at the div, EDX:EAX unchanged. */
        EXPECT_FAULT 1f
        mov     $1, %eax
        mov     $2, %edx
        xor     %ecx, %ecx
de_div: div     %ecx
1:      CHECK   "de_divide_by_zero"
        EXPECT  "vector", exc_vec, $0
        EXPECT  "eip", exc_eip, $de_div
        EXPECT  "eax kept", %eax, $1
        EXPECT  "edx kept", %edx, $2
        END_CHECK

/* #DE: a quotient too big for the destination, signed and unsigned. */
        EXPECT_FAULT 1f
        mov     $0x80000000, %eax
        mov     $0xffffffff, %edx               /* EDX:EAX = -2^31 */
        mov     $-1, %ecx
de_idiv: idiv   %ecx                            /* +2^31 does not fit */
1:      EXPECT_EXC "de_idiv_overflow", 0, 0, de_idiv

        EXPECT_FAULT 1f
        mov     $0x1000, %eax
        mov     $2, %cl
de_div8: div    %cl                             /* 0x800 does not fit in AL */
1:      EXPECT_EXC "de_div8_overflow", 0, 0, de_div8

/* #DE: aam with an immediate of 0. */
        EXPECT_FAULT 1f
de_aam: .byte   0xd4, 0x00                      /* aam $0 */
1:      EXPECT_EXC "de_aam_zero", 0, 0, de_aam

/* #DB single step: TF set by popf traps after the instruction that follows. */
        xor     %eax, %eax
        mov     %eax, %dr6
        EXPECT_FAULT 1f
        pushf
        orl     $EFLAGS_TF, (%esp)
        popf
        nop                                     /* the one stepped instruction */
db_after:
        nop
1:      mov     %dr6, %eax
        and     $DR6_BS, %eax
        mov     exc_eflags, %ecx
        and     $EFLAGS_TF, %ecx
        pushf
        pop     %ebx
        and     $EFLAGS_TF, %ebx
        CHECK   "db_single_step"
        EXPECT  "vector", exc_vec, $1
        EXPECT  "eip", exc_eip, $db_after
        EXPECT  "dr6.bs", %eax, $DR6_BS
        EXPECT  "pushed tf", %ecx, $EFLAGS_TF
        EXPECT  "tf after", %ebx, $0
        END_CHECK

/* #DB instruction breakpoint (DR0, DR7.L0, R/W=00): a fault, EIP at the
 * instruction, DR6.B0 set. */
        xor     %eax, %eax
        mov     %eax, %dr6
        mov     $db_exec_target, %eax
        mov     %eax, %dr0
        mov     $0x00000001, %eax               /* L0, execute, length 1 */
        mov     %eax, %dr7
        EXPECT_FAULT 1f
        nop
db_exec_target:
        nop
1:      xor     %eax, %eax
        mov     %eax, %dr7
        mov     %dr6, %eax
        and     $0xf, %eax
        CHECK   "db_instruction_breakpoint"
        EXPECT  "vector", exc_vec, $1
        EXPECT  "eip", exc_eip, $db_exec_target
        EXPECT  "dr6.b0-b3", %eax, $1
        END_CHECK

/* #DB data breakpoint (DR1, DR7.L1, R/W=01 write, 4 bytes): a read does not
 * trigger it; a write traps after the instruction, DR6.B1 set. */
        xor     %eax, %eax
        mov     %eax, %dr6
        mov     $db_var, %eax
        mov     %eax, %dr1
        mov     $0x00d00004, %eax               /* L1, write, length 4 */
        mov     %eax, %dr7
        EXPECT_FAULT 1f
        mov     db_var, %eax
        movl    $0x77, db_var
db_write_after:
        nop
1:      xor     %eax, %eax
        mov     %eax, %dr7
        mov     %dr6, %eax
        and     $0xf, %eax
        CHECK   "db_data_write_breakpoint"
        EXPECT  "vector", exc_vec, $1
        EXPECT  "eip", exc_eip, $db_write_after
        EXPECT  "dr6.b0-b3", %eax, $2
        EXPECT  "memory", db_var, $0x77
        END_CHECK

/* #BP: int3 is a trap, EIP after it. */
        EXPECT_FAULT 1f
        int3
bp_after:
1:      EXPECT_EXC "bp_int3", 3, 0, bp_after

/* #OF: into traps only when OF is set. */
        EXPECT_FAULT 1f
        mov     $0x7fffffff, %eax
        add     $1, %eax                        /* signed overflow: OF=1 */
        into
of_after:
1:      EXPECT_EXC "of_into_overflow", 4, 0, of_after

        EXPECT_NO_FAULT
        xor     %eax, %eax                      /* OF=0 */
        into
        CHECK   "of_into_no_overflow"
        EXPECT  "exceptions", exc_count, $0
        END_CHECK

/* #BR: bound faults outside [lower, upper], both ends inclusive. */
        EXPECT_FAULT 1f
        mov     $21, %eax
br_insn: bound  %eax, bounds
1:      EXPECT_EXC "br_bound_above", 5, 0, br_insn

        EXPECT_FAULT 1f
        mov     $9, %eax
br_insn2: bound %eax, bounds
1:      EXPECT_EXC "br_bound_below", 5, 0, br_insn2

        EXPECT_NO_FAULT
        mov     $10, %eax
        bound   %eax, bounds
        mov     $20, %eax
        bound   %eax, bounds
        CHECK   "br_bound_in_range"
        EXPECT  "exceptions", exc_count, $0
        END_CHECK

/* #UD: ud2. */
        EXPECT_FAULT 1f
ud_insn: ud2
1:      EXPECT_EXC "ud_ud2", 6, 0, ud_insn

/* #UD: a lock prefix on an instruction that cannot be locked. */
        EXPECT_FAULT 1f
ud_lock: .byte  0xf0                            /* lock (as refuses to assemble it here) */
        nop
1:      EXPECT_EXC "ud_lock_nop", 6, 0, ud_lock

        EXPECT_FAULT 1f
ud_lock_reg: .byte 0xf0                         /* lock */
        add     %ecx, %ebx                      /* a register destination */
1:      EXPECT_EXC "ud_lock_register_add", 6, 0, ud_lock_reg

/* #NM: wait with CR0.MP and CR0.TS set; after clts it runs. */
        mov     %cr0, %eax
        or      $(CR0_MP | CR0_TS), %eax
        mov     %eax, %cr0
        EXPECT_FAULT 1f
nm_insn: fwait
1:      EXPECT_EXC "nm_wait_with_ts", 7, 0, nm_insn

        clts
        EXPECT_NO_FAULT
        fwait
        mov     %cr0, %eax
        and     $CR0_TS, %eax
        CHECK   "nm_clts"
        EXPECT  "exceptions", exc_count, $0
        EXPECT  "cr0.ts", %eax, $0
        END_CHECK

/* Segment limits (DS: base SMALL_BASE, limit 0xfff): in-limit reads see the
 * base; a read past the limit, or one straddling it, is #GP(0). */
        EXPECT_NO_FAULT
        mov     $SMALL_DS, %ax
        mov     %ax, %ds
        mov     0xffc, %ebx
        mov     $KDATA, %ax
        mov     %ax, %ds
        CHECK   "segment_base_and_limit"
        EXPECT  "exceptions", exc_count, $0
        EXPECT  "word at offset 0xffc", %ebx, $0x5e6b0ff5
        END_CHECK

        EXPECT_FAULT 1f
        mov     $SMALL_DS, %ax
        mov     %ax, %ds
gp_lim: mov     0x1000, %ebx
1:      mov     $KDATA, %ax
        mov     %ax, %ds
        EXPECT_EXC "gp_segment_limit", 13, 0, gp_lim

        EXPECT_FAULT 1f
        mov     $SMALL_DS, %ax
        mov     %ax, %ds
gp_str: mov     0xffe, %ebx                     /* bytes 0xffe-0x1001 */
1:      mov     $KDATA, %ax
        mov     %ax, %ds
        EXPECT_EXC "gp_segment_limit_straddle", 13, 0, gp_str

/* Expand-down (limit 0xfff, B=1): offsets above the limit are valid, at or below it #GP(0). */
        EXPECT_FAULT 1f
        mov     $DOWN_DS, %ax
        mov     %ax, %ds
        mov     0x2000, %ebx                    /* valid */
gp_down: mov    0x800, %ecx                     /* below the limit */
1:      mov     $KDATA, %ax
        mov     %ax, %ds
        CHECK   "gp_expand_down"
        EXPECT  "word at offset 0x2000", %ebx, $0x0d0e0f10
        EXPECT  "vector", exc_vec, $13
        EXPECT  "error", exc_err, $0
        EXPECT  "eip", exc_eip, $gp_down
        END_CHECK

/* A write through a read-only data segment: #GP(0), memory unchanged. */
        movl    $0x52454144, scratch
        EXPECT_FAULT 1f
        mov     $RO_DS, %ax
        mov     %ax, %ds
gp_ro:  movl    $0, scratch
1:      mov     $KDATA, %ax
        mov     %ax, %ds
        CHECK   "gp_write_read_only_segment"
        EXPECT  "vector", exc_vec, $13
        EXPECT  "error", exc_err, $0
        EXPECT  "eip", exc_eip, $gp_ro
        EXPECT  "memory", scratch, $0x52454144
        END_CHECK

/* A null selector loads into DS, but using it is #GP(0). */
        EXPECT_FAULT 1f
        xor     %eax, %eax
        mov     %ax, %ds
gp_null: mov    scratch, %eax
1:      mov     $KDATA, %ax
        mov     %ax, %ds
        EXPECT_EXC "gp_null_ds_use", 13, 0, gp_null

/* A null selector into SS is #GP(0) at the load. */
        EXPECT_FAULT 1f
        xor     %eax, %eax
gp_nss: mov     %ax, %ss
1:      EXPECT_EXC "gp_null_ss_load", 13, 0, gp_nss

/* A selector past the GDT limit: #GP(selector). */
        EXPECT_FAULT 1f
        mov     $BEYOND_GDT, %ax
gp_gdt: mov     %ax, %ds
1:      mov     $KDATA, %ax
        mov     %ax, %ds
        EXPECT_EXC "gp_selector_beyond_gdt", 13, BEYOND_GDT, gp_gdt

/* A far jump to a data segment: #GP(selector); to a not-present code
 * segment: #NP(selector). */
        EXPECT_FAULT 1f
gp_jmp: ljmp    $KDATA, $1f
1:      EXPECT_EXC "gp_far_jmp_to_data_segment", 13, KDATA, gp_jmp

        EXPECT_FAULT 1f
np_jmp: ljmp    $ABSENT_CS, $1f
1:      EXPECT_EXC "np_far_jmp_absent_code", 11, ABSENT_CS, np_jmp

/* #SS: an ESP-relative read past the stack segment's limit (SS: base
 * STACK_BASE, limit 0xfff). ESP itself is valid, so the exception frame fits. */
        mov     %esp, saved_esp
        EXPECT_FAULT 1f
        mov     $SMALL_SS, %ax
        mov     %ax, %ss
        mov     $0xff0, %esp
ss_lim: mov     0x20(%esp), %eax                /* offset 0x1010 */
1:      mov     %esp, %ebx                      /* where the handler's iret left ESP */
        mov     $KDATA, %ax
        mov     %ax, %ss
        mov     saved_esp, %esp
        CHECK   "ss_stack_limit"
        EXPECT  "vector", exc_vec, $12
        EXPECT  "error", exc_err, $0
        EXPECT  "eip", exc_eip, $ss_lim
        EXPECT  "esp", %ebx, $0xff0
        EXPECT  "cs pushed on the small stack", STACK_BASE+0xfe8, $KCODE
        END_CHECK

/* #NP: loading a not-present data segment; error code = the selector. */
        EXPECT_FAULT 1f
        mov     $ABSENT_DS, %ax
np_seg: mov     %ax, %ds
1:      mov     $KDATA, %ax
        mov     %ax, %ds
        EXPECT_EXC "np_segment_load", 11, ABSENT_DS, np_seg

/* #NP: int n through a not-present IDT gate; error code = vector * 8 + 2 (IDT bit). */
        EXPECT_FAULT 1f
np_int: int     $VEC_ABSENT
1:      EXPECT_EXC "np_idt_gate", 11, VEC_ABSENT*8+2, np_int

/* #DF: a #GP whose gate is not present raises #NP while delivering it; two
 * contributory exceptions make a double fault, error code 0. The saved EIP
 * of a #DF is undefined, so it is not checked. */
        mov     $VEC_GP, %ebx                   /* gate 13: not present */
        mov     exc_stubs + VEC_GP*4, %eax
        mov     $GATE_ABSENT, %edx
        call    idt_set
        EXPECT_FAULT 1f
        mov     $BEYOND_GDT, %ax
        mov     %ax, %ds                        /* #GP -> #NP -> #DF */
1:      mov     $KDATA, %ax
        mov     %ax, %ds
        mov     $VEC_GP, %ebx                   /* gate 13 back */
        mov     exc_stubs + VEC_GP*4, %eax
        mov     $GATE_INT0, %edx
        call    idt_set
        CHECK   "df_gp_with_absent_gate"
        EXPECT  "vector", exc_vec, $8
        EXPECT  "error", exc_err, $0
        EXPECT  "exceptions", exc_count, $1
        END_CHECK

/* #TS (last: the rarest path, so a CPU that cannot take it still ran the
 * rest): iret with EFLAGS.NT set is a return to the task in the TSS back link;
 * a back link that is not a busy TSS (here the kernel data selector) is
 * #TS(back link). */
        movw    $KDATA, TSS_BASE                /* TSS offset 0: previous task link */
        EXPECT_FAULT 1f
        pushf
        orl     $EFLAGS_NT, (%esp)
        popf
ts_iret: iret
1:      pushf                                   /* the faulting iret left NT set */
        andl    $~EFLAGS_NT, (%esp)
        popf
        movw    $0, TSS_BASE
        EXPECT_EXC "ts_iret_nt_bad_back_link", 10, KDATA, ts_iret

        jmp     report_done

        .pushsection .text, 1
        .balign 4
bounds:         .long   10, 20
scratch:        .long   0
db_var:         .long   0
saved_esp:      .long   0
        .popsection
