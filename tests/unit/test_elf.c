/* test_elf.c: the ELF vmlinux loader on crafted ELF64 files: PVH and 64-bit entries, refusals. */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/pvh.h"
#include "arch/x86/x86.h"
#include "lib/lib.h"

#define PADDR    0x1000000ULL
#define VADDR    0xffffffff81000000ULL
#define SEG_OFF  0x1000
#define FILESZ   0x2000
#define MEMSZ    0x3000
#define NOTE_OFF 0x200
#define IMG_LEN  (SEG_OFF + FILESZ)

static uint8_t img[IMG_LEN];
static uint8_t initrd[5000];
static char err[512];
static struct guest_mem mem;

static Elf64_Ehdr *ehdr(void)
{
    return (Elf64_Ehdr *)img;
}
static Elf64_Phdr *phdr(unsigned i)
{
    return (Elf64_Phdr *)(img + sizeof(Elf64_Ehdr)) + i;
}

/* Appends one note at *off; returns nothing, advances *off by the padded size. */
static void note(size_t *off, const char *name, uint32_t type, const void *desc, uint32_t descsz)
{
    Elf64_Nhdr nh = {.n_namesz = (uint32_t)strlen(name) + 1, .n_descsz = descsz, .n_type = type};

    memcpy(img + *off, &nh, sizeof(nh));
    memcpy(img + *off + 12, name, nh.n_namesz);
    *off += 12 + ALIGN_UP(nh.n_namesz, 4);
    memcpy(img + *off, desc, descsz);
    *off += ALIGN_UP(descsz, 4);
}

/* A vmlinux-like ELF: one PT_LOAD (vaddr in the kernel map, paddr 16 MiB), one PT_NOTE with a
 * GNU build id and, if pvh_size is 4 or 8, the Xen PHYS32_ENTRY note. */
static void build(uint32_t pvh_size)
{
    Elf64_Ehdr *eh = ehdr();
    size_t off = NOTE_OFF;
    uint64_t pvh_entry = PADDR + 0x40;
    uint8_t build_id[20] = {1, 2, 3};

    memset(img, 0, sizeof(img));
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = ET_EXEC;
    eh->e_machine = EM_X86_64;
    eh->e_version = EV_CURRENT;
    eh->e_entry = PADDR; /* Linux: the physical address of startup_64 */
    eh->e_phoff = sizeof(Elf64_Ehdr);
    eh->e_ehsize = sizeof(Elf64_Ehdr);
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = 2;
    *phdr(0) = (Elf64_Phdr){.p_type = PT_LOAD,
                            .p_flags = PF_R | PF_X,
                            .p_offset = SEG_OFF,
                            .p_vaddr = VADDR,
                            .p_paddr = PADDR,
                            .p_filesz = FILESZ,
                            .p_memsz = MEMSZ,
                            .p_align = 0x200000};
    note(&off, "GNU", NT_GNU_BUILD_ID, build_id, sizeof(build_id));
    if (pvh_size)
        note(&off, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &pvh_entry, pvh_size);
    *phdr(1) = (Elf64_Phdr){
        .p_type = PT_NOTE, .p_offset = NOTE_OFF, .p_filesz = off - NOTE_OFF, .p_align = 4};
    for (size_t i = 0; i < FILESZ; i++)
        img[SEG_OFF + i] = (uint8_t)(i * 13 + 1);
}

static int setup(void **state)
{
    (void)state;
    build(0);
    memset(initrd, 0x77, sizeof(initrd));
    err[0] = '\0';
    if (guest_mem_init(&mem, 256 * MiB, X86_MMIO_HOLE_START) < 0)
        return -1;
    memset(mem.map + PADDR, 0xaa, 2 * MiB); /* bss must come out zeroed */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    guest_mem_destroy(&mem);
    return 0;
}

static int load(size_t len, const char *cmdline, struct x86_boot_info *info)
{
    struct x86_boot_config cfg = {.kernel = img,
                                  .kernel_len = len,
                                  .initrd = initrd,
                                  .initrd_len = sizeof(initrd),
                                  .cmdline = cmdline,
                                  .rsdp_gpa = 0xe0000};
    return x86_load_kernel(&mem, &cfg, info, err, sizeof(err));
}

static void expect_fail(int ret, const char *msg)
{
    struct x86_boot_info info;

    assert_int_equal(load(IMG_LEN, "", &info), ret);
    if (!strstr(err, msg))
        fail_msg("message \"%s\" lacks \"%s\"", err, msg);
}

static void assert_segment_loaded(void)
{
    static const uint8_t zero[MEMSZ - FILESZ];

    assert_memory_equal(guest_mem_ptr(&mem, PADDR, FILESZ), img + SEG_OFF, FILESZ);
    assert_memory_equal(guest_mem_ptr(&mem, PADDR + FILESZ, MEMSZ - FILESZ), zero, sizeof(zero));
    assert_int_equal(*(uint8_t *)guest_mem_ptr(&mem, PADDR + MEMSZ, 1), 0xaa);
}

static void test_64bit_entry(void **state)
{
    struct x86_boot_info info;
    const struct boot_params *bp;
    uint64_t rd = ALIGN_DOWN(256 * MiB - sizeof(initrd), 4096);

    (void)state;
    assert_int_equal(load(IMG_LEN, "console=ttyS0", &info), 0);
    assert_string_equal(info.format, "ELF vmlinux (64-bit entry)");
    assert_int_equal(info.mode, X86_ENTRY_LINUX64);
    assert_int_equal(info.entry, PADDR);
    assert_int_equal(info.boot_struct, X86_ZERO_PAGE_ADDR);
    assert_int_equal(info.kernel_start, PADDR);
    assert_int_equal(info.kernel_end, PADDR + MEMSZ);
    assert_int_equal(info.initrd_start, rd);
    assert_segment_loaded();
    bp = guest_mem_ptr(&mem, X86_ZERO_PAGE_ADDR, sizeof(*bp));
    assert_memory_equal(&bp->hdr.header, "HdrS", 4);
    assert_int_equal(bp->hdr.boot_flag, 0xaa55);
    assert_int_equal(bp->hdr.version, 0x020f);
    assert_int_equal(bp->hdr.type_of_loader, 0xff);
    assert_int_equal(bp->hdr.kernel_alignment, 0x1000000);
    assert_int_equal(bp->hdr.cmdline_size, 2047);
    assert_int_equal(bp->hdr.cmd_line_ptr, X86_CMDLINE_ADDR);
    assert_int_equal(bp->hdr.ramdisk_image, rd);
    assert_int_equal(bp->hdr.ramdisk_size, sizeof(initrd));
    assert_int_equal(bp->acpi_rsdp_addr, 0xe0000);
    assert_int_equal(bp->e820_entries, 3);
    assert_string_equal(guest_mem_ptr(&mem, X86_CMDLINE_ADDR, 1), "console=ttyS0");
}

static void test_virtual_entry_translated(void **state)
{
    struct x86_boot_info info;

    (void)state;
    ehdr()->e_entry = VADDR + 0x100;
    assert_int_equal(load(IMG_LEN, "", &info), 0);
    assert_int_equal(info.entry, PADDR + 0x100);
    ehdr()->e_entry = VADDR + MEMSZ;
    expect_fail(-EINVAL, "entry point 0xffffffff81003000 is not inside any loadable segment");
    ehdr()->e_entry = 0x500000;
    expect_fail(-EINVAL, "entry point 0x500000 is not inside");
}

static void check_pvh(uint32_t size)
{
    struct x86_boot_info info;
    const struct hvm_start_info *si;
    const struct hvm_modlist_entry *mod;
    const struct hvm_memmap_table_entry *map;

    build(size);
    assert_int_equal(load(IMG_LEN, "quiet", &info), 0);
    assert_string_equal(info.format, "ELF vmlinux (PVH)");
    assert_int_equal(info.mode, X86_ENTRY_PVH);
    assert_int_equal(info.entry, PADDR + 0x40);
    assert_int_equal(info.boot_struct, X86_PVH_INFO_ADDR);
    assert_segment_loaded();
    si = guest_mem_ptr(&mem, X86_PVH_INFO_ADDR, sizeof(*si));
    assert_int_equal(si->magic, 0x336ec578);
    assert_int_equal(si->version, 1);
    assert_int_equal(si->flags, 0);
    assert_int_equal(si->cmdline_paddr, X86_CMDLINE_ADDR);
    assert_string_equal(guest_mem_ptr(&mem, si->cmdline_paddr, 1), "quiet");
    assert_int_equal(si->rsdp_paddr, 0xe0000);
    assert_int_equal(si->nr_modules, 1);
    mod = guest_mem_ptr(&mem, si->modlist_paddr, sizeof(*mod));
    assert_non_null(mod);
    assert_int_equal(mod->paddr, info.initrd_start);
    assert_int_equal(mod->size, sizeof(initrd));
    assert_memory_equal(guest_mem_ptr(&mem, mod->paddr, sizeof(initrd)), initrd, sizeof(initrd));
    assert_int_equal(si->memmap_entries, 3);
    map = guest_mem_ptr(&mem, si->memmap_paddr, 3 * sizeof(*map));
    assert_non_null(map);
    assert_true(si->memmap_paddr + 3 * sizeof(*map) <= X86_ZERO_PAGE_ADDR);
    assert_int_equal(map[0].addr, 0);
    assert_int_equal(map[0].type, XEN_HVM_MEMMAP_TYPE_RAM);
    assert_int_equal(map[1].addr, X86_EBDA_START);
    assert_int_equal(map[1].type, XEN_HVM_MEMMAP_TYPE_RESERVED);
    assert_int_equal(map[2].addr, X86_HIMEM_START);
    assert_int_equal(map[2].size, 255 * MiB);
    assert_int_equal(map[2].reserved, 0);
}

static void test_pvh_note_4_bytes(void **state)
{
    (void)state;
    check_pvh(4);
}

static void test_pvh_note_8_bytes(void **state)
{
    (void)state;
    check_pvh(8); /* what Linux emits */
}

static void test_pvh_bad_notes(void **state)
{
    uint64_t big = 1ULL << 32;
    size_t off = NOTE_OFF;

    (void)state;
    build(2);
    expect_fail(-EINVAL, "PHYS32_ENTRY note holds 2 bytes; expected 4 or 8");
    build(0);
    note(&off, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &big, 8);
    phdr(1)->p_filesz = off - NOTE_OFF;
    expect_fail(-EINVAL, "PVH entry 0x100000000 is not a non-zero 32-bit address");
    build(4);
    memcpy(img + NOTE_OFF + 12 + 4 + 20 + 16, &(uint32_t){0x800000}, 4);
    expect_fail(-EINVAL, "PVH entry 0x800000 is not inside any loadable segment");
    build(4);
    ((Elf64_Nhdr *)(img + NOTE_OFF))->n_descsz = 0x10000;
    expect_fail(-EINVAL, "note at offset 0 of segment 1 runs past its end");
    build(4);
    ((Elf64_Nhdr *)(img + NOTE_OFF))->n_namesz = 0xffffffff;
    expect_fail(-EINVAL, "runs past its end");
    build(4);
    phdr(1)->p_offset = IMG_LEN - 8;
    expect_fail(-EINVAL, "note segment 1 [0x2ff8,+0x38) runs past the end");
}

static void test_header_refusals(void **state)
{
    struct x86_boot_info info;

    (void)state;
    assert_int_equal(load(40, "", &info), -EINVAL);
    assert_non_null(strstr(err, "ELF: file is 40 bytes, shorter than an ELF64 header (64)"));
    ehdr()->e_ident[EI_CLASS] = ELFCLASS32;
    expect_fail(-EINVAL, "class 1 is not ELFCLASS64");
    build(0);
    ehdr()->e_ident[EI_DATA] = ELFDATA2MSB;
    expect_fail(-EINVAL, "data encoding 2 is not little-endian");
    build(0);
    ehdr()->e_version = 0;
    expect_fail(-EINVAL, "version 0 is not EV_CURRENT");
    build(0);
    ehdr()->e_machine = EM_386;
    expect_fail(-EINVAL, "machine 3 is not x86-64 (62)");
    build(0);
    ehdr()->e_type = ET_DYN;
    expect_fail(-EINVAL, "type 3 is not ET_EXEC");
    build(0);
    ehdr()->e_phentsize = 32;
    expect_fail(-EINVAL, "program header entry size 32 is not 56");
    build(0);
    ehdr()->e_phnum = 0;
    expect_fail(-EINVAL, "0 program headers; kiln accepts 1 to 64");
    ehdr()->e_phnum = 65;
    expect_fail(-EINVAL, "65 program headers");
    build(0);
    ehdr()->e_phoff = IMG_LEN - 56;
    expect_fail(-EINVAL, "program headers [0x2fc8,+0x70) lie outside the 12288-byte file");
    ehdr()->e_phoff = UINT64_MAX - 8;
    expect_fail(-EINVAL, "program headers [0xfffffffffffffff7,+0x70) lie outside");
}

static void test_segment_refusals(void **state)
{
    (void)state;
    phdr(0)->p_filesz = MEMSZ + 1;
    expect_fail(-EINVAL, "segment 0 has p_filesz 0x3001 larger than p_memsz 0x3000");
    build(0);
    phdr(0)->p_offset = SEG_OFF + 1;
    expect_fail(-EINVAL, "segment 0 file range [0x1001,+0x2000) runs past the end");
    phdr(0)->p_offset = UINT64_MAX - 0x10;
    expect_fail(-EINVAL, "segment 0 file range [0xffffffffffffffef,+0x2000) runs past the end");
    build(0);
    phdr(0)->p_paddr = 512 * MiB;
    expect_fail(-ENOMEM, "segment 0 [0x20000000,+0x3000) lies outside guest memory");
    phdr(0)->p_paddr = 256 * MiB - 0x1000;
    expect_fail(-ENOMEM, "segment 0 [0xffff000,+0x3000) lies outside guest memory");
    phdr(0)->p_paddr = UINT64_MAX - 0x100;
    expect_fail(-ENOMEM, "lies outside guest memory");
    phdr(0)->p_paddr = 0x7000; /* would cover the zero page */
    expect_fail(-ENOMEM, "segment 0 [0x7000,+0x3000) lies outside guest memory");
    /* RAM above 4 GiB exists but is out of reach of the boot entries. */
    guest_mem_destroy(&mem);
    assert_int_equal(guest_mem_init(&mem, 4 * GiB, X86_MMIO_HOLE_START), 0);
    phdr(0)->p_paddr = 4 * GiB;
    assert_non_null(guest_mem_ptr(&mem, 4 * GiB, MEMSZ));
    expect_fail(-ENOMEM, "segment 0 [0x100000000,+0x3000) lies outside guest memory (kernels "
                         "load between 1 MiB and 0xc0000000)");
    build(0);
    phdr(0)->p_type = PT_NULL;
    expect_fail(-EINVAL, "no loadable (PT_LOAD) segment");
}

static void test_empty_segment_skipped(void **state)
{
    struct x86_boot_info info;

    (void)state;
    ehdr()->e_phnum = 3;
    /* A zero-sized PT_LOAD anywhere is harmless and ignored. */
    *phdr(2) = (Elf64_Phdr){.p_type = PT_LOAD, .p_paddr = UINT64_MAX, .p_offset = UINT64_MAX};
    assert_int_equal(load(IMG_LEN, "", &info), 0);
    assert_int_equal(info.kernel_end, PADDR + MEMSZ);
}

static void test_cmdline_too_long(void **state)
{
    struct x86_boot_info info;
    char line[3001];

    (void)state;
    memset(line, 'x', 3000);
    line[3000] = '\0';
    assert_int_equal(load(IMG_LEN, line, &info), -E2BIG);
    assert_non_null(strstr(err, "command line is 3000 bytes; this kernel accepts at most 2047"));
}

static void test_initrd_too_big(void **state)
{
    struct x86_boot_info info;
    struct x86_boot_config cfg = {.kernel = img,
                                  .kernel_len = IMG_LEN,
                                  .initrd = initrd,
                                  .initrd_len = 255 * MiB,
                                  .cmdline = ""};

    (void)state;
    assert_int_equal(x86_load_kernel(&mem, &cfg, &info, err, sizeof(err)), -ENOMEM);
    assert_non_null(strstr(err, "initrd of 255 MiB does not fit below 0x10000000 in 256 MiB"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_64bit_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_virtual_entry_translated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pvh_note_4_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pvh_note_8_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pvh_bad_notes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_segment_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmdline_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_initrd_too_big, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
