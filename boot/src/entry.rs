//! From QEMU's PVH entry to Rust, in assembly.
//!
//! QEMU finds the Xen note of type 18 (`XEN_ELFNOTE_PHYS32_ENTRY`) and
//! enters its address in 32-bit protected mode with paging off and the
//! start-info address in EBX; there is no stack. The trampoline:
//! 1. records the TSC (for the entry-to-prompt benchmark) and zeroes .bss;
//! 2. builds temporary tables mapping the first 4 GiB three times: identity
//!    (the trampoline keeps running after paging is on), at the direct-map
//!    base (Rust reads the start info and memory there), and the first 1 GiB
//!    again at -2 GiB, where the kernel image is linked;
//! 3. turns on PAE, long mode, NX and paging with write-protect honoured in
//!    ring 0, loads a minimal GDT and far-jumps into 64-bit code;
//! 4. switches to the boot stack and calls
//!    `boot_rust_entry(start_info, entry_tsc)`.
//!
//! Rust then replaces all of this with the kernel's real tables.

core::arch::global_asm!(
    r#"
    .section .note.pvh, "a", @note
    .balign 4
    .long 4                 /* name size: "Xen\0" */
    .long 8                 /* descriptor size */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad faultline_pvh_start
    .balign 4

    .section .boot.text, "ax"
    .code32
    .global faultline_pvh_start
faultline_pvh_start:
    cli
    cld
    movl %ebx, %esi                 /* start info; kept in esi throughout */
    rdtsc
    movl %eax, faultline_boot_tsc
    movl %edx, faultline_boot_tsc + 4

    movl $__bss_phys_start, %edi
    movl $__bss_phys_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb

    movl $boot_pml4, %edi           /* 7 table pages, NOLOAD so not zeroed */
    movl $(7 * 1024), %ecx
    xorl %eax, %eax
    rep stosl

    movl $boot_pd, %edi             /* 2048 x 2 MiB = 4 GiB identity */
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax                 /* present, writable, 2 MiB */
    movl %eax, (%edi,%ecx,8)
    movl %ecx, %edx
    shrl $11, %edx
    movl %edx, 4(%edi,%ecx,8)
    incl %ecx
    cmpl $2048, %ecx
    jb 1b

    movl $boot_pdpt_low, %edi
    movl $(boot_pd + 3), %eax
    movl %eax, 0(%edi)
    addl $4096, %eax
    movl %eax, 8(%edi)
    addl $4096, %eax
    movl %eax, 16(%edi)
    addl $4096, %eax
    movl %eax, 24(%edi)

    movl $boot_pdpt_high, %edi
    movl $(boot_pd + 3), %eax
    movl %eax, 510 * 8(%edi)

    movl $boot_pml4, %edi
    movl $(boot_pdpt_low + 3), %eax
    movl %eax, 0(%edi)              /* identity */
    movl %eax, 256 * 8(%edi)        /* direct map base */
    movl $(boot_pdpt_high + 3), %eax
    movl %eax, 511 * 8(%edi)        /* kernel image at -2 GiB */

    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $(1 << 5), %eax             /* PAE */
    movl %eax, %cr4
    movl $0xC0000080, %ecx          /* EFER */
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax   /* long mode, no-execute */
    wrmsr
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16)), %eax  /* paging, write-protect */
    movl %eax, %cr0
    lgdt boot_gdt_ptr
    ljmp $0x08, $boot_long_mode

    .code64
boot_long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $__stack_top, %rsp
    xorl %ebp, %ebp
    movl %esi, %edi                 /* zero-extends into rdi */
    movq faultline_boot_tsc, %rsi   /* absolute: high-half Rust code cannot reach low symbols */
    movabsq ${entry}, %rax
    callq *%rax
2:  hlt
    jmp 2b

    .section .boot.data, "aw"
    .balign 8
    .global faultline_boot_tsc
faultline_boot_tsc:
    .quad 0
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 64-bit code */
    .quad 0x00cf92000000ffff        /* data */
boot_gdt_ptr:
    .word 23
    .long boot_gdt

    .section .boot.bss, "aw", @nobits
    .balign 4096
boot_pml4:      .skip 4096
boot_pdpt_low:  .skip 4096
boot_pdpt_high: .skip 4096
boot_pd:        .skip 4 * 4096
    "#,
    entry = sym crate::boot_rust_entry,
    options(att_syntax)
);
