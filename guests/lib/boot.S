/*
 * boot.S — a 512-byte boot sector that lets QEMU (with its BIOS) run the flat
 * 32-bit guests exactly as `vmrr run --mode pm32 --load 0x100000` does:
 * flat 32-bit protected mode, CS=0x08, DS=ES=FS=GS=SS=0x10, ESP=0x100000,
 * IF=0, entered at 0x100000.
 *
 * Disk layout (see the Makefile's .img rule): this sector, then the guest
 * image padded to IMAGE_SECTORS sectors. Only for checking guests against
 * QEMU; vmrr never runs it.
 */

        .code16
        .text
        .globl  _start

        .set    IMAGE_SECTORS, 64           /* 32 KiB: the largest guest image */
        .set    BUFFER_SEG,    0x1000       /* read to 0x10000, below 1 MiB */
        .set    LOAD,          0x100000

_start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $0x7c00, %sp

        /* Mask both PICs: the BIOS left the PIT running, and its IRQ 0 would
         * arrive at vector 8 if a guest ever ran with IF=1. */
        mov     $0xff, %al
        out     %al, $0x21
        out     %al, $0xa1

        /* Fast A20, so that 0x100000 is not 0x000000. */
        in      $0x92, %al
        or      $2, %al
        and     $0xfe, %al
        out     %al, $0x92

        /* INT 13h AH=42h: read the image (DL = boot drive from the BIOS). */
        mov     $dap, %si
        mov     $0x42, %ah
        int     $0x13
        jc      fail

        lgdt    gdt_desc
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmp    $0x08, $pm32

        .code32
pm32:   mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %fs
        mov     %ax, %gs
        mov     %ax, %ss
        cld
        mov     $(BUFFER_SEG << 4), %esi
        mov     $LOAD, %edi
        mov     $(IMAGE_SECTORS * 512 / 4), %ecx
        rep movsl
        mov     $LOAD, %esp
        xor     %eax, %eax
        xor     %ebx, %ebx
        xor     %ecx, %ecx
        xor     %edx, %edx
        xor     %esi, %esi
        xor     %edi, %edi
        xor     %ebp, %ebp
        push    $2                          /* EFLAGS as at reset: only bit 1 */
        popf
        ljmp    $0x08, $LOAD

        .code16
fail:   mov     $'!', %al                   /* the read failed: say so on COM1 */
        mov     $0x3f8, %dx
        out     %al, %dx
1:      hlt
        jmp     1b

        .balign 4
dap:    .byte   0x10, 0                     /* disk address packet */
        .word   IMAGE_SECTORS
        .word   0, BUFFER_SEG               /* offset, segment */
        .quad   1                           /* LBA 1: right after this sector */

        .balign 8
gdt:    .quad   0
        .quad   0x00cf9a000000ffff          /* 0x08 flat 32-bit code */
        .quad   0x00cf92000000ffff          /* 0x10 flat data */
gdt_desc:
        .word   gdt_desc - gdt - 1
        .long   gdt

        .org    510
        .byte   0x55, 0xaa
