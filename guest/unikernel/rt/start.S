/* start.S: unikernel entry points. _start: kiln's 64-bit entry (RDI = boot info, RSP = top of RAM).
 * _start32: the PVH entry (Xen PHYS32_ENTRY note) QEMU -kernel uses: 32-bit protected mode with
 * paging off, so it builds its own page tables and enters long mode first. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

    .section .note.pvh, "a"
    .p2align 2
    .long 4                        /* namesz: "Xen\0" */
    .long 4                        /* descsz */
    .long XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .long _start32

    .section .text.boot, "ax"
    .code64
    .globl _start
_start:
    andq $-16, %rsp
    xorl %esi, %esi                /* not PVH */
    call rt_start
1:  hlt
    jmp 1b

    .code32
    .globl _start32
_start32:
    cli
    /* PML4[0] -> PDPT; PDPT[0] -> PD; PD: 512 x 2 MiB pages = the first 1 GiB, identity. */
    movl $pvh_pdpt, %eax
    orl $3, %eax
    movl %eax, pvh_pml4
    movl $pvh_pd, %eax
    orl $3, %eax
    movl %eax, pvh_pdpt
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax                /* present, writable, 2 MiB */
    movl %eax, pvh_pd(,%ecx,8)
    incl %ecx
    cmpl $512, %ecx
    jne 2b
    movl $pvh_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x620, %eax               /* PAE, OSFXSR, OSXMMEXCPT */
    movl %eax, %cr4
    movl $0xc0000080, %ecx         /* EFER.LME */
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010023, %eax          /* PG, WP, NE, MP, PE */
    movl %eax, %cr0
    lgdt pvh_gdt_desc
    ljmp $0x08, $3f

    .code64
3:  movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movq $pvh_stack_top, %rsp
    xorl %edi, %edi                /* no kiln boot info */
    movl $1, %esi                  /* PVH */
    call rt_start
4:  hlt
    jmp 4b

    .section .rodata
    .p2align 3
pvh_gdt:
    .quad 0
    .quad 0x00af9b000000ffff       /* code64 */
    .quad 0x00cf93000000ffff       /* data */
pvh_gdt_desc:
    .word 3 * 8 - 1
    .long pvh_gdt

    .section .bss
    .p2align 12
pvh_pml4: .skip 4096
pvh_pdpt: .skip 4096
pvh_pd:   .skip 4096
    .skip 16384
pvh_stack_top:
