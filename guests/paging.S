/*
 * paging.S — two-level 32-bit paging, checked from inside the guest.
 *
 * Entered in flat 32-bit protected mode at 0x100000 (see lib/system.inc for
 * the memory map). Builds a page directory at 0x200000:
 *
 *   PDE 0  page table PT0: identity map of 0-4 MiB, 4 KiB pages, user, writable
 *          (code, stacks, tables and the physical test frames at 0x300000);
 *   PDE 1  page table PT1: 4-8 MiB, one test mapping per check (below);
 *   PDE 2  one 4 MiB page (CR4.PSE): virtual 0x800000 -> physical 0xc00000;
 *   PDE 3+ not present.
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

        .set    PD,         0x200000
        .set    PT0,        0x201000
        .set    PT1,        0x202000
        .set    FRAMES,     0x300000        /* physical test frames, identity-mapped */
        .set    BIG_PHYS,   0xc00000        /* the 4 MiB page's frame */
        .set    BIG_VIRT,   0x800000

        .set    P,  0x01                    /* present */
        .set    W,  0x02                    /* writable */
        .set    U,  0x04                    /* user */
        .set    A,  0x20                    /* accessed */
        .set    D,  0x40                    /* dirty */
        .set    PS, 0x80                    /* 4 MiB page (in a PDE) */

        .set    CR0_WP, 1 << 16
        .set    CR0_PG, 1 << 31
        .set    CR4_PSE, 1 << 4

        /* Virtual test pages in PDE 1's range, one per check: V(n) = 4 MiB + n pages. */
        .set    V_ALIAS,    0x400000        /* -> FRAMES + 0x0000 */
        .set    V_BIG_LO,   0x401000        /* -> BIG_PHYS + 0x1000 (sees into the 4 MiB page) */
        .set    V_BIG_HI,   0x402000        /* -> BIG_PHYS + 0x3ff000 */
        .set    V_READ,     0x403000        /* -> FRAMES + 0x3000: A/D on read then write */
        .set    V_WRITE,    0x404000        /* -> FRAMES + 0x4000: A/D on a first write */
        .set    V_ABSENT,   0x405000        /* not present (frame bits set, P clear) */
        .set    V_RO,       0x406000        /* -> FRAMES + 0x6000: supervisor, read-only */
        .set    V_SUPER,    0x407000        /* -> FRAMES + 0x7000: supervisor, writable */
        .set    V_USER_RO,  0x408000        /* -> FRAMES + 0x8000: user, read-only */
        .set    V_TLB,      0x409000        /* -> FRAMES + 0x9000, then FRAMES + 0xa000 */
        .set    V_FETCH,    0x40b000        /* not present: an instruction fetch faults */
        .set    V_NO_PDE,   0xc00000        /* PDE 3 is not present */

/* SET_PTE virt, value: write the PT1 entry that maps a virtual address in 4-8 MiB. */
.macro  SET_PTE virt, value
        movl    $\value, PT1 + (((\virt) - 0x400000) >> 12) * 4
.endm

.macro  FLUSH_TLB
        mov     %cr3, %eax
        mov     %eax, %cr3
.endm

main:
        mov     $KSTACK_TOP, %esp
        call    sys_init

        /* Known contents in the test frames and the 4 MiB page (physical, paging off). */
        mov     $FRAMES, %edi
        mov     $(0x10000 / 4), %ecx
        xor     %eax, %eax
        rep stosl
        movl    $0xaaaa0001, FRAMES + 0x9000
        movl    $0xbbbb0002, FRAMES + 0xa000
        movl    $0x52454144, FRAMES + 0x6000    /* "READ": the read-only page's word */
        movl    $0x55534552, FRAMES + 0x8000    /* "USER" */
        movl    $0, BIG_PHYS + 0x1230
        movl    $0, BIG_PHYS + 0x3ffffc
        movl    $0x600df00d, marker             /* read back once paging is on */

        /* Page directory and tables. */
        mov     $PD, %edi
        mov     $(3 * 1024), %ecx               /* PD, PT0, PT1 */
        xor     %eax, %eax
        rep stosl
        mov     $PT0, %edi                      /* identity 0-4 MiB */
        mov     $(P | W | U), %eax
        mov     $1024, %ecx
1:      stosl
        add     $0x1000, %eax
        loop    1b
        movl    $(PT0 | P | W | U), PD + 0
        movl    $(PT1 | P | W | U), PD + 4
        movl    $(BIG_PHYS | PS | P | W), PD + 8

        SET_PTE V_ALIAS,   FRAMES + 0x0000 | P | W
        SET_PTE V_BIG_LO,  BIG_PHYS + 0x1000 | P | W
        SET_PTE V_BIG_HI,  BIG_PHYS + 0x3ff000 | P | W
        SET_PTE V_READ,    FRAMES + 0x3000 | P | W
        SET_PTE V_WRITE,   FRAMES + 0x4000 | P | W
        SET_PTE V_ABSENT,  FRAMES + 0x5000 | W
        SET_PTE V_RO,      FRAMES + 0x6000 | P
        SET_PTE V_SUPER,   FRAMES + 0x7000 | P | W
        SET_PTE V_USER_RO, FRAMES + 0x8000 | P | U
        SET_PTE V_TLB,     FRAMES + 0x9000 | P | W

        /* Paging on: CR3, CR4.PSE, then CR0.PG with CR0.WP clear. */
        mov     $PD, %eax
        mov     %eax, %cr3
        mov     %cr4, %eax
        or      $CR4_PSE, %eax
        mov     %eax, %cr4
        mov     %cr0, %eax
        and     $~CR0_WP, %eax
        or      $CR0_PG, %eax
        mov     %eax, %cr0
        jmp     1f                              /* the identity map keeps EIP valid */
1:

/* The code runs on through the identity map, CR0 reads back PG, data reads the same. */
        mov     %cr0, %eax
        and     $CR0_PG, %eax
        CHECK   "paging_enabled"
        EXPECT  "cr0.pg", %eax, $CR0_PG
        EXPECT  "identity read", marker, $0x600df00d
        END_CHECK

/* A 4 KiB page mapped to another frame: a write through one name is read through the other. */
        movl    $0x11223344, V_ALIAS + 0x10
        movl    $0x55667788, FRAMES + 0x20
        CHECK   "alias_4k"
        EXPECT  "frame via identity", FRAMES+0x10, $0x11223344
        EXPECT  "frame via alias", V_ALIAS+0x20, $0x55667788
        END_CHECK

/* A 4 MiB page (PDE.PS with CR4.PSE): virtual 0x800000 + x is physical 0xc00000 + x,
 * seen through 4 KiB aliases at both ends of the big frame. */
        movl    $0xcafef00d, BIG_VIRT + 0x1230
        movl    $0x0badc0de, V_BIG_HI + 0xffc
        CHECK   "pse_4m_page"
        EXPECT  "low word via 4k alias", V_BIG_LO+0x230, $0xcafef00d
        EXPECT  "top word via 4 MiB page", BIG_VIRT+0x3ffffc, $0x0badc0de
        END_CHECK

/* A read sets PTE.A (and PDE.A) and nothing else; the first write then sets PTE.D. */
        andl    $~A, PD + 4                     /* PDE 1 was used above */
        FLUSH_TLB
        mov     V_READ, %eax
        CHECK   "accessed_on_read"
        EXPECT  "pte", PT1+3*4, $(FRAMES+0x3000|P|W|A)
        EXPECT  "pde", PD+4, $(PT1|P|W|U|A)
        END_CHECK
        movl    $1, V_READ
        CHECK   "dirty_on_write"
        EXPECT  "pte", PT1+3*4, $(FRAMES+0x3000|P|W|A|D)
        END_CHECK

/* A first access that is a write sets A and D together. */
        movl    $2, V_WRITE
        CHECK   "accessed_dirty_on_first_write"
        EXPECT  "pte", PT1+4*4, $(FRAMES+0x4000|P|W|A|D)
        END_CHECK

/* The 4 MiB page's PDE gets A on a read and D on a write. */
        movl    $(BIG_PHYS | PS | P | W), PD + 8
        FLUSH_TLB
        mov     BIG_VIRT, %eax
        mov     PD + 8, %ebx
        movl    $3, BIG_VIRT
        CHECK   "pse_accessed_dirty"
        EXPECT  "pde after read", %ebx, $(BIG_PHYS|PS|P|W|A)
        EXPECT  "pde after write", PD+8, $(BIG_PHYS|PS|P|W|A|D)
        END_CHECK

/* #PF on a not-present page: error code 0 for a read, 2 for a write; CR2 is the
 * address; EIP is the faulting instruction, which did not complete. */
        EXPECT_FAULT 1f
        mov     $0x12345678, %ebx
pf_read: mov    V_ABSENT + 0x10, %ebx
1:      CHECK   "pf_read_not_present"
        EXPECT  "vector", exc_vec, $14
        EXPECT  "error", exc_err, $0
        EXPECT  "cr2", exc_cr2, $(V_ABSENT+0x10)
        EXPECT  "eip", exc_eip, $pf_read
        EXPECT  "ebx kept", %ebx, $0x12345678
        END_CHECK

        EXPECT_FAULT 1f
pf_write: movl  $1, V_ABSENT + 0x20
1:      CHECK   "pf_write_not_present"
        EXPECT  "vector", exc_vec, $14
        EXPECT  "error", exc_err, $2
        EXPECT  "cr2", exc_cr2, $(V_ABSENT+0x20)
        EXPECT  "eip", exc_eip, $pf_write
        EXPECT  "frame untouched", FRAMES+0x5020, $0
        END_CHECK

/* A not-present PDE faults the same way. */
        EXPECT_FAULT 1f
pf_pde: mov     V_NO_PDE + 0x123, %eax
1:      CHECK   "pf_pde_not_present"
        EXPECT  "vector", exc_vec, $14
        EXPECT  "error", exc_err, $0
        EXPECT  "cr2", exc_cr2, $(V_NO_PDE+0x123)
        EXPECT  "eip", exc_eip, $pf_pde
        END_CHECK

/* A dword write that straddles into a not-present page faults with CR2 at the
 * start of that page and writes neither half. */
        movl    $0x01020304, V_WRITE + 0xffc
        EXPECT_FAULT 1f
pf_split: movl  $0xa1b2c3d4, V_WRITE + 0xffe
1:      CHECK   "pf_split_write"
        EXPECT  "vector", exc_vec, $14
        EXPECT  "error", exc_err, $2
        EXPECT  "cr2", exc_cr2, $V_ABSENT
        EXPECT  "eip", exc_eip, $pf_split
        EXPECT  "first page untouched", V_WRITE+0xffc, $0x01020304
        END_CHECK

/* An instruction fetch from a not-present page: CR2 = EIP = the target
 * (no I/D bit in the error code without PAE/NX). The call itself completed. */
        mov     %esp, saved_esp
        EXPECT_FAULT 1f
        call    V_FETCH
1:      mov     saved_esp, %eax
        sub     %esp, %eax                      /* bytes the call pushed */
        mov     saved_esp, %esp
        CHECK   "pf_fetch_not_present"
        EXPECT  "vector", exc_vec, $14
        EXPECT  "error", exc_err, $0
        EXPECT  "cr2", exc_cr2, $V_FETCH
        EXPECT  "eip", exc_eip, $V_FETCH
        EXPECT  "return address pushed", %eax, $4
        END_CHECK

/* CR0.WP=1: a supervisor write to a read-only page faults (error 3: present, write). */
        mov     %cr0, %eax
        or      $CR0_WP, %eax
        mov     %eax, %cr0
        EXPECT_FAULT 1f
pf_wp:  movl    $0xdeadbeef, V_RO
1:      CHECK   "wp1_supervisor_write_faults"
        EXPECT  "vector", exc_vec, $14
        EXPECT  "error", exc_err, $3
        EXPECT  "cr2", exc_cr2, $V_RO
        EXPECT  "eip", exc_eip, $pf_wp
        EXPECT  "frame untouched", FRAMES+0x6000, $0x52454144
        END_CHECK

/* CR0.WP=0: the same write succeeds. */
        mov     %cr0, %eax
        and     $~CR0_WP, %eax
        mov     %eax, %cr0
        EXPECT_NO_FAULT
        movl    $0x57524954, V_RO               /* "WRIT" */
        CHECK   "wp0_supervisor_write_allowed"
        EXPECT  "exceptions", exc_count, $0
        EXPECT  "frame", FRAMES+0x6000, $0x57524954
        END_CHECK

/* Ring 3 reads a supervisor page: error 5 (present, read, user). */
        EXPECT_FAULT user_super_resume
        mov     $user_super_read, %eax
        mov     $EFLAGS_IF | 2, %edx
        call    enter_user
        CHECK   "pf_user_reads_supervisor_page"
        EXPECT  "vector", exc_vec, $14
        EXPECT  "error", exc_err, $5
        EXPECT  "cr2", exc_cr2, $V_SUPER
        EXPECT  "eip", exc_eip, $user_super_insn
        EXPECT  "cs", exc_cs, $UCODE
        END_CHECK

/* Ring 3 calls into a supervisor page: the fetch faults with error 5 (no
 * I/D bit without PAE/NX), CR2 = EIP = the target. */
        EXPECT_FAULT user_fetch_resume
        mov     $user_super_fetch, %eax
        mov     $EFLAGS_IF | 2, %edx
        call    enter_user
        CHECK   "pf_user_fetches_supervisor_page"
        EXPECT  "vector", exc_vec, $14
        EXPECT  "error", exc_err, $5
        EXPECT  "cr2", exc_cr2, $V_SUPER
        EXPECT  "eip", exc_eip, $V_SUPER
        EXPECT  "cs", exc_cs, $UCODE
        END_CHECK

/* Ring 3 reads a user read-only page (fine), then writes it: error 7 (present,
 * write, user), even with CR0.WP=0, which only concerns supervisor writes. */
        EXPECT_FAULT user_ro_resume
        mov     $user_ro_write, %eax
        mov     $EFLAGS_IF | 2, %edx
        call    enter_user
        CHECK   "pf_user_writes_read_only_page"
        EXPECT  "user read", user_read_value, $0x55534552
        EXPECT  "vector", exc_vec, $14
        EXPECT  "error", exc_err, $7
        EXPECT  "cr2", exc_cr2, $(V_USER_RO+4)
        EXPECT  "eip", exc_eip, $user_ro_insn
        EXPECT  "frame untouched", FRAMES+0x8004, $0
        END_CHECK

/* TLB: change a PTE that the TLB may hold. Before invlpg a CPU may still use
 * the old translation (reported, not judged); after invlpg, and after a CR3
 * reload, it must use the new one. */
        mov     V_TLB, %eax                     /* cache the translation */
        SET_PTE V_TLB, FRAMES + 0xa000 | P | W
        mov     V_TLB, %eax
        cmp     $0xaaaa0001, %eax
        jne     1f
        INFO    "tlb_before_invlpg", "the old mapping was still used before invlpg"
        jmp     2f
1:      INFO    "tlb_before_invlpg", "the new mapping was used before invlpg"
2:      invlpg  V_TLB
        CHECK   "tlb_invlpg"
        EXPECT  "word", V_TLB, $0xbbbb0002
        END_CHECK

        SET_PTE V_TLB, FRAMES + 0x9000 | P | W
        FLUSH_TLB
        CHECK   "tlb_cr3_reload"
        EXPECT  "word", V_TLB, $0xaaaa0001
        END_CHECK

        jmp     report_done

/* Ring-3 code (identity-mapped user pages). Each ends with int $SYS_EXIT. */
user_super_read:
user_super_insn:
        mov     V_SUPER, %eax
user_super_resume:
        int     $SYS_EXIT

user_super_fetch:
        call    V_SUPER
user_fetch_resume:
        int     $SYS_EXIT

user_ro_write:
        mov     V_USER_RO, %eax
        mov     %eax, user_read_value
user_ro_insn:
        movl    $1, V_USER_RO + 4
user_ro_resume:
        int     $SYS_EXIT

        .pushsection .text, 1
        .balign 4
marker:          .long  0
saved_esp:       .long  0
user_read_value: .long  0
        .popsection
