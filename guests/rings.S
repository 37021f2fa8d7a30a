/*
 * rings.S — privilege levels: ring 3 entry by iret, the TSS stack switch,
 * DPL checks on interrupt gates, IOPL and the I/O permission bitmap, a call
 * gate with a parameter, privileged instructions.
 *
 * Entered in flat 32-bit protected mode at 0x100000 (memory map in
 * lib/system.inc). Ring-3 code runs on flat DPL-3 segments (no paging) and
 * returns to the kernel with `int $SYS_EXIT`. Faults taken in ring 3 resume
 * in ring 3 at the label given to EXPECT_FAULT.
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

        .set    CALL_GATE,  FREE_SEL | 3    /* GDT call gate, DPL 3, to ring 0 */
        .set    INT_TRAP3,  0x80            /* trap gate, DPL 3 */
        .set    INT_INTR3,  0x83            /* interrupt gate, DPL 3 */
        .set    INT_DPL0,   0x82            /* interrupt gate, DPL 0: ring 3 may not use it */

        .set    USER_FLAGS, EFLAGS_IF | 2   /* ring 3, IOPL 0, interrupts on */
        .set    IOPL3,      3 << 12

        .set    EFLAGS_AC,  1 << 18
        .set    CR0_AM,     1 << 18
        .set    MSR_SYSENTER_CS,  0x174
        .set    MSR_SYSENTER_ESP, 0x175
        .set    MSR_SYSENTER_EIP, 0x176
        .set    SYSENTER_STACK,   ESP0_TOP - 0x100

        .set    PORT_OK,    0x3ff           /* COM1 scratch register: allowed in the bitmap */
        .set    PORT_DENY,  0x3fe           /* COM1 modem status: denied */

/* Run `insn` in ring 3 (IOPL 0) and expect #GP(err) with EIP at it. */
.macro  RING3_GP name, err, insn:vararg
        jmp     .Lkernel\@
.Luser\@:
        \insn
.Lresume\@:
        int     $SYS_EXIT
.Lkernel\@:
        EXPECT_FAULT .Lresume\@
        mov     $.Luser\@, %eax
        mov     $USER_FLAGS, %edx
        call    enter_user
        CHECK   "\name"
        EXPECT  "vector", exc_vec, $13
        EXPECT  "error", exc_err, $(\err)
        EXPECT  "eip", exc_eip, $.Luser\@
        EXPECT  "cs", exc_cs, $UCODE
        END_CHECK
.endm

main:
        mov     $KSTACK_TOP, %esp
        call    sys_init

        mov     $INT_TRAP3, %ebx
        mov     $int80_handler, %eax
        mov     $GATE_TRAP3, %edx
        call    idt_set
        mov     $INT_INTR3, %ebx
        mov     $int83_handler, %eax
        mov     $GATE_INT3, %edx
        call    idt_set
        mov     $INT_DPL0, %ebx
        mov     $int82_handler, %eax
        mov     $GATE_INT0, %edx
        call    idt_set

        lea     gdt + FREE_SEL, %edi            /* call gate: 1 dword parameter */
        mov     $gate_target, %eax
        mov     $KCODE, %ebx
        mov     $(1 << 8) | GATE_CALL3, %edx
        call    gate_set

        /* I/O bitmap: allow PORT_OK only (bit = 0 means allowed). */
        andb    $~(1 << (PORT_OK & 7)), TSS_BASE + TSS_IOMAP + (PORT_OK >> 3)

/* iret to ring 3: CS and SS have RPL 3, the data segments stay loaded. */
        EXPECT_NO_FAULT
        mov     $user_whoami, %eax
        mov     $USER_FLAGS, %edx
        call    enter_user
        CHECK   "iret_to_ring3"
        EXPECT  "exceptions", exc_count, $0
        EXPECT  "cs", u_cs, $UCODE
        EXPECT  "ss", u_ss, $UDATA
        EXPECT  "ds", u_ds, $UDATA
        EXPECT  "esp", u_esp, $USTACK_TOP
        EXPECT  "eflags", u_eflags, $USER_FLAGS
        END_CHECK

/* iret to ring 3 with DPL-0 selectors in DS, ES and GS: the CPU loads them
 * null; FS (DPL 3) is kept. */
        EXPECT_NO_FAULT
        call    enter_user_kernel_ds
        CHECK   "iret_nulls_dpl0_data_segments"
        EXPECT  "exceptions", exc_count, $0
        EXPECT  "ds", u_ds, $0
        EXPECT  "es", u_es, $0
        EXPECT  "gs", u_gs, $0
        EXPECT  "fs", u_fs, $UDATA
        END_CHECK

/* int $0x80 through a DPL-3 trap gate: the CPU switches to SS0:ESP0 from the
 * TSS and pushes SS, ESP, EFLAGS, CS, EIP there; IF stays set (trap gate);
 * iret goes back to ring 3 on the old stack. */
        EXPECT_NO_FAULT
        mov     $user_int80, %eax
        mov     $USER_FLAGS, %edx
        call    enter_user
        CHECK   "int80_trap_gate_stack_switch"
        EXPECT  "exceptions", exc_count, $0
        EXPECT  "handler esp", k_esp, $(ESP0_TOP-20)
        EXPECT  "handler ss", k_ss, $KDATA
        EXPECT  "handler cs", k_cs, $KCODE
        EXPECT  "handler eflags", k_eflags, $USER_FLAGS
        EXPECT  "pushed eip", k_frame+0, $int80_after
        EXPECT  "pushed cs", k_frame+4, $UCODE
        EXPECT  "pushed eflags", k_frame+8, $USER_FLAGS
        EXPECT  "pushed esp", k_frame+12, $USTACK_TOP
        EXPECT  "pushed ss", k_frame+16, $UDATA
        EXPECT  "eax returned", u_eax, $0x600d
        EXPECT  "esp after iret", u_esp, $USTACK_TOP
        EXPECT  "cs after iret", u_cs, $UCODE
        END_CHECK

/* An interrupt gate does the same but clears IF in the handler. */
        EXPECT_NO_FAULT
        mov     $user_int83, %eax
        mov     $USER_FLAGS, %edx
        call    enter_user
        CHECK   "int_gate_clears_if"
        EXPECT  "exceptions", exc_count, $0
        EXPECT  "handler eflags", k_eflags, $2
        EXPECT  "pushed eflags", k_frame+8, $USER_FLAGS
        EXPECT  "eflags after iret", u_eflags, $USER_FLAGS
        END_CHECK

/* Software interrupts check the gate's DPL: #GP(vector * 8 + 2), IDT bit set. */
        RING3_GP "int_dpl0_gate_from_ring3", INT_DPL0*8+2, int $INT_DPL0

/* IOPL 0 < CPL 3: cli and sti fault, popf leaves IF alone. */
        RING3_GP "cli_iopl0", 0, cli
        RING3_GP "sti_iopl0", 0, sti

        EXPECT_NO_FAULT
        mov     $user_popf, %eax
        mov     $USER_FLAGS, %edx
        call    enter_user
        CHECK   "popf_keeps_if_and_iopl"
        EXPECT  "exceptions", exc_count, $0
        EXPECT  "eflags", u_eflags, $(USER_FLAGS|1)
        END_CHECK

/* The I/O permission bitmap: an allowed port works, a denied one faults, and a
 * word access needs every byte's bit clear (PORT_OK + 1 is denied). */
        EXPECT_NO_FAULT
        mov     $user_io_ok, %eax
        mov     $USER_FLAGS, %edx
        call    enter_user
        CHECK   "io_bitmap_allows"
        EXPECT  "exceptions", exc_count, $0
        EXPECT  "scratch read back", u_eax, $0x5a
        END_CHECK

        mov     $PORT_DENY, %ebx                /* EBX reaches ring 3 unchanged */
        RING3_GP "io_bitmap_denies_in", 0, in %dx, %al
        RING3_GP "io_bitmap_denies_out", 0, out %al, %dx
        RING3_GP "io_bitmap_word_straddle", 0, in %dx, %ax

/* IOPL 3: ring 3 may use any port and cli/sti; the bitmap is not consulted. */
        EXPECT_NO_FAULT
        mov     $user_iopl3, %eax
        mov     $(USER_FLAGS|IOPL3), %edx
        call    enter_user
        CHECK   "iopl3_io_and_cli"
        EXPECT  "exceptions", exc_count, $0
        EXPECT  "eflags after cli", u_eflags, $(IOPL3|2)
        END_CHECK

/* A far call through a DPL-3 call gate to ring 0: new stack from the TSS with
 * SS, ESP, the copied parameter, CS, EIP; lret $4 returns and drops the
 * parameter from both stacks. */
        EXPECT_NO_FAULT
        mov     $user_callgate, %eax
        mov     $USER_FLAGS, %edx
        call    enter_user
        CHECK   "call_gate_to_ring0"
        EXPECT  "exceptions", exc_count, $0
        EXPECT  "handler esp", k_esp, $(ESP0_TOP-20)
        EXPECT  "handler ss", k_ss, $KDATA
        EXPECT  "handler cs", k_cs, $KCODE
        EXPECT  "pushed eip", k_frame+0, $callgate_after
        EXPECT  "pushed cs", k_frame+4, $UCODE
        EXPECT  "copied parameter", k_frame+8, $0xfeedface
        EXPECT  "pushed esp", k_frame+12, $(USTACK_TOP-4)
        EXPECT  "pushed ss", k_frame+16, $UDATA
        EXPECT  "eax returned", u_eax, $0xc0ffee
        EXPECT  "esp after lret", u_esp, $USTACK_TOP
        EXPECT  "cs after lret", u_cs, $UCODE
        END_CHECK

/* Privileged instructions at CPL 3: #GP(0). */
        RING3_GP "mov_to_cr0_ring3", 0, mov %eax, %cr0
        RING3_GP "mov_from_cr3_ring3", 0, mov %cr3, %eax
        RING3_GP "hlt_ring3", 0, hlt
        RING3_GP "lgdt_ring3", 0, lgdt gdt_desc
        RING3_GP "lidt_ring3", 0, lidt idt_desc
        RING3_GP "ltr_ring3", 0, ltr %ax

        RING3_GP "rdmsr_ring3", 0, rdmsr

/* Loading a DPL-0 data segment at CPL 3: #GP(selector). */
        mov     $KDATA, %ebx
        RING3_GP "load_dpl0_ds_ring3", KDATA, mov %bx, %ds

/* A far call to a DPL-0 code segment from ring 3: #GP(selector). */
        RING3_GP "far_call_dpl0_code", KCODE, lcall $KCODE, $gate_target

/* sysexit to ring 3 and sysenter back, with the flat GDT layout they assume
 * (SYSENTER_CS, +8 kernel SS, +16 user CS, +24 user SS). sysexit takes EIP
 * from EDX and ESP from ECX; sysenter takes CS, ESP, EIP from the MSRs and
 * clears IF. */
        xor     %edx, %edx
        mov     $MSR_SYSENTER_CS, %ecx
        mov     $KCODE, %eax
        wrmsr
        mov     $MSR_SYSENTER_ESP, %ecx
        mov     $SYSENTER_STACK, %eax
        wrmsr
        mov     $MSR_SYSENTER_EIP, %ecx
        mov     $sysenter_entry, %eax
        wrmsr
        mov     $MSR_SYSENTER_EIP, %ecx
        rdmsr
        CHECK   "wrmsr_rdmsr_sysenter_eip"
        EXPECT  "eax", %eax, $sysenter_entry
        EXPECT  "edx", %edx, $0
        END_CHECK

        EXPECT_NO_FAULT
        call    enter_sysexit
        CHECK   "sysexit_to_ring3"
        EXPECT  "exceptions", exc_count, $0
        EXPECT  "cs", u_cs, $UCODE
        EXPECT  "ss", u_ss, $UDATA
        EXPECT  "esp", u_esp, $(USTACK_TOP-64)
        END_CHECK
        CHECK   "sysenter_to_ring0"
        EXPECT  "cs", k_cs, $KCODE
        EXPECT  "ss", k_ss, $KDATA
        EXPECT  "esp", k_esp, $SYSENTER_STACK
        EXPECT  "eflags.if", k_eflags, $0
        END_CHECK

/* Alignment check: CR0.AM, EFLAGS.AC and CPL 3 make a misaligned dword read
 * raise #AC(0). (QEMU's TCG does not model #AC: checked against Bochs.) */
        mov     %cr0, %eax
        or      $CR0_AM, %eax
        mov     %eax, %cr0
        EXPECT_FAULT user_ac_resume
        mov     $user_ac, %eax
        mov     $(USER_FLAGS|EFLAGS_AC), %edx
        call    enter_user
        CHECK   "alignment_check_ring3"
        EXPECT  "vector", exc_vec, $17
        EXPECT  "error", exc_err, $0
        EXPECT  "eip", exc_eip, $user_ac_insn
        EXPECT  "cs", exc_cs, $UCODE
        END_CHECK

        jmp     report_done

/* enter_user_kernel_ds: like enter_user into user_segs, but DS, ES, GS keep
 * the kernel's DPL-0 data selector. */
enter_user_kernel_ds:
        pusha
        mov     %esp, kernel_esp
        mov     $UDATA, %ax
        mov     %ax, %fs
        mov     $KDATA, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %gs
        pushl   $UDATA
        pushl   $USTACK_TOP
        pushl   $USER_FLAGS
        pushl   $UCODE
        pushl   $user_segs
        iret

/* enter_sysexit: like enter_user, but into user_sysexit by sysexit; back
 * here when that code runs sysenter. */
enter_sysexit:
        pusha
        mov     %esp, kernel_esp
        mov     $UDATA, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     $user_sysexit, %edx
        mov     $(USTACK_TOP-64), %ecx
        sysexit

sysenter_entry:
        pushf                                   /* IF as sysenter left it */
        pop     %eax
        and     $EFLAGS_IF, %eax
        mov     %eax, k_eflags
        mov     %esp, k_esp
        xor     %eax, %eax
        mov     %cs, %ax
        mov     %eax, k_cs
        mov     %ss, %ax
        mov     %eax, k_ss
        jmp     sys_exit                        /* back to enter_sysexit's caller */

/* ---- ring 0 handlers ---- */

/* Record the frame the CPU pushed, ESP, SS, CS and EFLAGS as the handler sees them. */
record_entry:                                   /* called first thing: frame at 4(%esp) */
        pushf                                   /* before anything changes the flags */
        popl    k_eflags
        push    %eax
        lea     8(%esp), %eax
        mov     %eax, k_esp
        mov     8(%esp), %eax
        mov     %eax, k_frame+0
        mov     12(%esp), %eax
        mov     %eax, k_frame+4
        mov     16(%esp), %eax
        mov     %eax, k_frame+8
        mov     20(%esp), %eax
        mov     %eax, k_frame+12
        mov     24(%esp), %eax
        mov     %eax, k_frame+16
        xor     %eax, %eax
        mov     %ss, %ax
        mov     %eax, k_ss
        mov     %cs, %ax
        mov     %eax, k_cs
        pop     %eax
        ret

int80_handler:
        call    record_entry
        mov     $0x600d, %eax
        iret

int83_handler:
        call    record_entry
        iret

int82_handler:                                  /* must never run from ring 3 */
        iret

gate_target:
        call    record_entry
        mov     $0xc0ffee, %eax
        lret    $4

/* ---- ring 3 code; each piece ends with int $SYS_EXIT ---- */

/* Store CS, SS, DS, ESP, EFLAGS and EAX as ring 3 sees them. */
user_record:                                    /* called: the caller's ESP is 4(%esp) */
        pushf                                   /* the flags as the caller left them */
        popl    u_eflags
        mov     %eax, u_eax
        lea     4(%esp), %eax
        mov     %eax, u_esp
        xor     %eax, %eax
        mov     %cs, %ax
        mov     %eax, u_cs
        mov     %ss, %ax
        mov     %eax, u_ss
        mov     %ds, %ax
        mov     %eax, u_ds
        mov     u_eax, %eax
        ret

user_whoami:
        call    user_record
        int     $SYS_EXIT

user_int80:
        mov     $0x1234, %eax
        int     $INT_TRAP3
int80_after:
        call    user_record
        int     $SYS_EXIT

user_int83:
        int     $INT_INTR3
        call    user_record
        int     $SYS_EXIT

user_popf:
        pushl   $(IOPL3|1)                      /* try IF=0 and IOPL=3; set CF */
        popf
        call    user_record
        int     $SYS_EXIT

user_io_ok:
        mov     $PORT_OK, %dx
        mov     $0x5a, %al
        out     %al, %dx
        xor     %eax, %eax
        in      %dx, %al
        call    user_record
        int     $SYS_EXIT

user_iopl3:
        mov     $PORT_DENY, %dx
        in      %dx, %al
        out     %al, %dx
        cli
        call    user_record
        sti
        int     $SYS_EXIT

user_callgate:
        pushl   $0xfeedface
        lcall   $CALL_GATE, $0                  /* the offset is ignored for a gate */
callgate_after:
        call    user_record
        int     $SYS_EXIT

user_segs:                                      /* DS may be null here: store through FS */
        xor     %eax, %eax
        mov     %ds, %ax
        mov     %eax, %fs:u_ds
        mov     %es, %ax
        mov     %eax, %fs:u_es
        mov     %gs, %ax
        mov     %eax, %fs:u_gs
        mov     %fs, %ax
        mov     %eax, %fs:u_fs
        int     $SYS_EXIT

user_sysexit:
        call    user_record
        sysenter

user_ac:
        mov     $USTACK_TOP-16, %ebx
user_ac_insn:
        mov     1(%ebx), %eax                   /* misaligned dword */
user_ac_resume:
        int     $SYS_EXIT

        .pushsection .text, 1
        .balign 4
k_esp:          .long   0
k_ss:           .long   0
k_cs:           .long   0
k_eflags:       .long   0
k_frame:        .fill   5, 4, 0
u_eax:          .long   0
u_esp:          .long   0
u_eflags:       .long   0
u_cs:           .long   0
u_ss:           .long   0
u_ds:           .long   0
u_es:           .long   0
u_fs:           .long   0
u_gs:           .long   0
        .popsection
