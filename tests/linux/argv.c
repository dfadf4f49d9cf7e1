/* argv: what the kernel puts on the initial stack (execve(2), the System V
 * x86_64 ABI's "Process Initialization"): argc, the argument and
 * environment strings, and the auxiliary vector. The runner passes
 * argv = [NAME, "a", "b"] and envp = ["ORACLE=1"].
 *
 * Printed: the strings themselves, AT_PAGESZ, AT_PHENT, AT_PHNUM (fixed by
 * this binary), whether AT_PHDR, AT_ENTRY and AT_RANDOM are present, and
 * facts derived from them; never an address or the random bytes.
 */
#include "sys.h"

extern char __ehdr_start[]; /* the ELF header, placed by the linker */

static unsigned long aux(unsigned long type, int *present)
{
    for (unsigned long *a = oracle_auxv; a[0] != AT_NULL; a += 2)
        if (a[0] == type) {
            *present = 1;
            return a[1];
        }
    *present = 0;
    return 0;
}

struct elf64_phdr {
    uint32_t p_type, p_flags;
    uint64_t p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align;
};

int main(int argc, char **argv, char **envp)
{
    expect_int("argc", argc, 3);
    for (int i = 0; i < argc; i++) {
        char key[] = "argv0";
        key[4] = (char)('0' + i % 10);
        put_str(key, argv[i]);
    }
    check("argv0_is_name", str_eq(argv[0], "argv"));
    check("argv1_is_a", argc > 1 && str_eq(argv[1], "a"));
    check("argv2_is_b", argc > 2 && str_eq(argv[2], "b"));
    expect_int("argv_null_terminated", argv[argc] == 0, 1);
    expect_int("argv_on_entry_stack", argv == (char **)(oracle_entry_sp + 1), 1);
    expect_int("entry_rsp_aligned16", ((unsigned long)oracle_entry_sp & 15) == 0, 1);

    int envc = 0;
    while (envp[envc])
        envc++;
    expect_int("envc", envc, 1);
    put_str("env0", envc ? envp[0] : "(none)");
    check("env0_is_oracle", envc && str_eq(envp[0], "ORACLE=1"));
    expect_int("envp_follows_argv", envp == argv + argc + 1, 1);

    int has;
    unsigned long v = aux(AT_PAGESZ, &has);
    expect_int("at_pagesz", has ? (long)v : -1, 4096);
    v = aux(AT_PHENT, &has);
    expect_int("at_phent", has ? (long)v : -1, (long)sizeof(struct elf64_phdr));
    unsigned long phnum = aux(AT_PHNUM, &has);
    put_int("at_phnum", has ? (long)phnum : -1);

    unsigned long phdr = aux(AT_PHDR, &has);
    expect_int("has_at_phdr", has, 1);
    if (has) {
        /* The program headers are where AT_PHDR says: the first PT_LOAD
         * that maps the file's start maps the ELF header (magic) too. */
        const struct elf64_phdr *ph = (const struct elf64_phdr *)phdr;
        int loads = 0;
        for (unsigned long i = 0; i < phnum; i++)
            loads += ph[i].p_type == PT_LOAD;
        put_int("phdr_load_segments", loads);
        check("phdr_has_load_segments", loads > 0);
        expect_int("at_phdr_is_ehdr_plus_phoff",
                   phdr == (unsigned long)__ehdr_start + *(uint64_t *)(__ehdr_start + 32), 1);
    }
    unsigned long entry = aux(AT_ENTRY, &has);
    expect_int("has_at_entry", has, 1);
    expect_int("at_entry_is_start", has && entry == (unsigned long)&_start, 1);
    unsigned long random = aux(AT_RANDOM, &has);
    expect_int("has_at_random", has, 1);
    if (has) {
        /* 16 bytes the program can read; their value is not printed. */
        volatile const unsigned char *r = (const unsigned char *)random;
        unsigned sum = 0;
        for (int i = 0; i < 16; i++)
            sum += r[i];
        (void)sum;
        put_int("at_random_readable", 1);
    }
    int pairs = 0;
    for (unsigned long *a = oracle_auxv; a[0] != AT_NULL; a += 2)
        pairs++;
    check("auxv_not_empty", pairs > 0);
    return checks_result();
}
