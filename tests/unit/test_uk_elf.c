/* test_uk_elf.c: the unikernel ELF loader: a good image loads; every bad header, segment and note
 * is refused with a message (src/unikernel/elf.c). */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/lib.h"
#include "unikernel/uk.h"

#define MEM  (16 * MiB)
#define BASE 0x100000ULL

/* ehdr, 3 phdrs (text, bss, note), note at 0x200, code at 0x1000 */
struct image {
    uint8_t b[0x2000];
    size_t len;
};

static Elf64_Ehdr *eh(struct image *im)
{
    return (Elf64_Ehdr *)im->b;
}

static Elf64_Phdr *ph(struct image *im, unsigned i)
{
    return (Elf64_Phdr *)(im->b + sizeof(Elf64_Ehdr)) + i;
}

static void build(struct image *im, uint32_t version)
{
    struct {
        Elf64_Nhdr nh;
        char name[8];
        struct kiln_hvc_note_abi abi;
    } note = {{5, 8, KILN_HVC_NOTE_ABI}, "Kiln", {version, 0}};

    memset(im, 0, sizeof(*im));
    im->len = sizeof(im->b);
    memcpy(eh(im)->e_ident, ELFMAG, SELFMAG);
    eh(im)->e_ident[EI_CLASS] = ELFCLASS64;
    eh(im)->e_ident[EI_DATA] = ELFDATA2LSB;
    eh(im)->e_ident[EI_VERSION] = EV_CURRENT;
    eh(im)->e_version = EV_CURRENT;
    eh(im)->e_machine = EM_X86_64;
    eh(im)->e_type = ET_EXEC;
    eh(im)->e_phentsize = sizeof(Elf64_Phdr);
    eh(im)->e_phnum = 3;
    eh(im)->e_phoff = sizeof(Elf64_Ehdr);
    eh(im)->e_entry = BASE + 0x10;
    *ph(im, 0) = (Elf64_Phdr){.p_type = PT_LOAD,
                              .p_flags = PF_R | PF_X,
                              .p_offset = 0x1000,
                              .p_vaddr = BASE,
                              .p_paddr = BASE,
                              .p_filesz = 0x100,
                              .p_memsz = 0x100};
    *ph(im, 1) = (Elf64_Phdr){.p_type = PT_LOAD,
                              .p_flags = PF_R | PF_W,
                              .p_offset = 0x1100,
                              .p_vaddr = BASE + 0x1000,
                              .p_paddr = BASE + 0x1000,
                              .p_filesz = 0x10,
                              .p_memsz = 0x3000};
    *ph(im, 2) = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = 0x200, .p_filesz = sizeof(note)};
    memcpy(im->b + 0x200, &note, sizeof(note));
    memset(im->b + 0x1000, 0x90, 0x100);
    memset(im->b + 0x1100, 0xaa, 0x10);
}

static int load(struct image *im, struct guest_mem *mem, char *err)
{
    struct uk_image img;

    return uk_elf_load(mem, MEM, im->b, im->len, &img, err, 256);
}

static void test_good_image_loads(void **state)
{
    struct image im;
    struct guest_mem mem;
    struct uk_image img;
    char err[256] = "";
    uint8_t *p;

    (void)state;
    build(&im, KILN_HVC_VERSION);
    assert_int_equal(guest_mem_init(&mem, MEM, 3 * GiB), 0);
    /* bss must come out zero even where memory was dirty */
    memset(guest_mem_ptr(&mem, BASE + 0x1000, 0x3000), 0x55, 0x3000);
    assert_int_equal(uk_elf_load(&mem, MEM, im.b, im.len, &img, err, sizeof(err)), 0);
    assert_int_equal(img.entry, BASE + 0x10);
    assert_int_equal(img.image_end, BASE + 0x4000);
    assert_int_equal(img.nsegments, 2);
    assert_int_equal(img.abi_version, KILN_HVC_VERSION);
    p = guest_mem_ptr(&mem, BASE, 0x4000);
    assert_int_equal(p[0], 0x90);
    assert_int_equal(p[0x1000], 0xaa);
    assert_int_equal(p[0x1010], 0);
    assert_int_equal(p[0x3fff], 0);
    /* the check-only pass agrees */
    assert_int_equal(uk_elf_load(NULL, MEM, im.b, im.len, &img, err, sizeof(err)), 0);
    guest_mem_destroy(&mem);
}

/* Each case mutates a good image and expects ret and a message fragment. */
static void expect_refused(void (*mutate)(struct image *), int want, const char *fragment)
{
    struct image im;
    char err[256] = "";

    build(&im, KILN_HVC_VERSION);
    mutate(&im);
    assert_int_equal(load(&im, NULL, err), want);
    if (!strstr(err, fragment))
        fail_msg("message '%s' lacks '%s'", err, fragment);
}

static void m_truncated(struct image *im)
{
    im->len = 40;
}
static void m_truncated_phdrs(struct image *im)
{
    im->len = sizeof(Elf64_Ehdr) + 10;
}
static void m_truncated_segment(struct image *im)
{
    im->len = 0x1080;
}
static void m_magic(struct image *im)
{
    im->b[1] = 'X';
}
static void m_class(struct image *im)
{
    im->b[EI_CLASS] = ELFCLASS32;
}
static void m_endian(struct image *im)
{
    im->b[EI_DATA] = ELFDATA2MSB;
}
static void m_version(struct image *im)
{
    eh(im)->e_version = 7;
}
static void m_machine(struct image *im)
{
    eh(im)->e_machine = EM_AARCH64;
}
static void m_dyn(struct image *im)
{
    eh(im)->e_type = ET_DYN;
}
static void m_rel(struct image *im)
{
    eh(im)->e_type = ET_REL;
}
static void m_interp(struct image *im)
{
    ph(im, 2)->p_type = PT_INTERP;
}
static void m_dynamic(struct image *im)
{
    ph(im, 2)->p_type = PT_DYNAMIC;
}
static void m_phentsize(struct image *im)
{
    eh(im)->e_phentsize = 32;
}
static void m_phnum0(struct image *im)
{
    eh(im)->e_phnum = 0;
}
static void m_phnum_big(struct image *im)
{
    eh(im)->e_phnum = 200;
}
static void m_phoff(struct image *im)
{
    eh(im)->e_phoff = UINT64_MAX - 8;
}
static void m_filesz(struct image *im)
{
    ph(im, 0)->p_filesz = 0x200;
}
static void m_offset_wrap(struct image *im)
{
    ph(im, 0)->p_offset = UINT64_MAX - 0x10;
}
static void m_vaddr(struct image *im)
{
    ph(im, 0)->p_vaddr = 0xffffffff80000000ULL;
}
static void m_low(struct image *im)
{
    ph(im, 0)->p_paddr = ph(im, 0)->p_vaddr = 0x8000;
    eh(im)->e_entry = 0x8010;
}
static void m_too_big(struct image *im)
{
    ph(im, 1)->p_memsz = MEM;
}
static void m_wrap(struct image *im)
{
    ph(im, 1)->p_paddr = ph(im, 1)->p_vaddr = UINT64_MAX - 0x100;
}
static void m_overlap(struct image *im)
{
    ph(im, 1)->p_paddr = ph(im, 1)->p_vaddr = BASE + 0x80;
}
static void m_entry(struct image *im)
{
    eh(im)->e_entry = BASE + 0x1000;
}
static void m_entry_nx(struct image *im)
{
    ph(im, 0)->p_flags = PF_R;
}
static void m_no_load(struct image *im)
{
    ph(im, 0)->p_type = PT_NULL;
    ph(im, 1)->p_type = PT_NULL;
}
static void m_no_note(struct image *im)
{
    ph(im, 2)->p_type = PT_NULL;
}
static void m_note_past(struct image *im)
{
    ph(im, 2)->p_filesz = 0x10000;
}
static void m_note_desc(struct image *im)
{
    ((Elf64_Nhdr *)(im->b + 0x200))->n_descsz = 4000;
}
static void m_note_size(struct image *im)
{
    ((Elf64_Nhdr *)(im->b + 0x200))->n_descsz = 4;
}
static void m_abi(struct image *im)
{
    ((uint32_t *)(im->b + 0x200 + 12 + 8))[0] = 99;
}

static void test_refusals(void **state)
{
    (void)state;
    expect_refused(m_truncated, -EINVAL, "shorter than an ELF64 header");
    expect_refused(m_truncated_phdrs, -EINVAL, "past the end");
    expect_refused(m_truncated_segment, -EINVAL, "past the end");
    expect_refused(m_magic, -EINVAL, "magic");
    expect_refused(m_class, -EINVAL, "ELFCLASS64");
    expect_refused(m_endian, -EINVAL, "little-endian");
    expect_refused(m_version, -EINVAL, "EV_CURRENT");
    expect_refused(m_machine, -EINVAL, "not x86-64");
    expect_refused(m_dyn, -EINVAL, "ET_DYN");
    expect_refused(m_rel, -EINVAL, "not ET_EXEC");
    expect_refused(m_interp, -EINVAL, "PT_INTERP");
    expect_refused(m_dynamic, -EINVAL, "PT_DYNAMIC");
    expect_refused(m_phentsize, -EINVAL, "program header size");
    expect_refused(m_phnum0, -EINVAL, "0 program headers");
    expect_refused(m_phnum_big, -EINVAL, "200 program headers");
    expect_refused(m_phoff, -EINVAL, "past the end");
    expect_refused(m_filesz, -EINVAL, "exceeds its memory size");
    expect_refused(m_offset_wrap, -EINVAL, "past the end");
    expect_refused(m_vaddr, -EINVAL, "identity-mapped");
    expect_refused(m_low, -EINVAL, "lies below");
    expect_refused(m_too_big, -ENOMEM, "does not fit");
    expect_refused(m_wrap, -ENOMEM, "does not fit");
    expect_refused(m_overlap, -EINVAL, "overlap");
    expect_refused(m_entry, -EINVAL, "entry point");
    expect_refused(m_entry_nx, -EINVAL, "entry point");
    expect_refused(m_no_load, -EINVAL, "no loadable segment");
    expect_refused(m_no_note, -EPROTO, "no Kiln ABI note");
    expect_refused(m_note_past, -EINVAL, "note segment");
    expect_refused(m_note_desc, -EINVAL, "runs past its segment");
    expect_refused(m_note_size, -EPROTO, "descriptor is 4 bytes");
    expect_refused(m_abi, -EPROTO, "version 99");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_image_loads),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
