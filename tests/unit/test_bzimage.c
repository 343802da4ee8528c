/* test_bzimage.c: the bzImage loader on crafted images: placement, zero page, every refusal. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/x86.h"
#include "lib/lib.h"

#define SECTS     4
#define SETUP     ((SECTS + 1) * 512)
#define PAYLOAD   (64 * KiB)
#define INIT_SIZE (8 * MiB)
#define PREF      (16 * MiB)
#define IMG_LEN   (SETUP + PAYLOAD)

static uint8_t img[IMG_LEN + 4096];
static uint8_t initrd[3 * 4096 + 100];
static char err[512];
static struct guest_mem mem;

static void put16(size_t off, uint16_t v)
{
    memcpy(img + off, &v, 2);
}
static void put32(size_t off, uint32_t v)
{
    memcpy(img + off, &v, 4);
}
static void put64(size_t off, uint64_t v)
{
    memcpy(img + off, &v, 8);
}

/* A minimal relocatable protocol-2.15 bzImage: setup header fields at their offsets. */
static void build(void)
{
    memset(img, 0, sizeof(img));
    img[0x1f1] = SECTS;
    put32(0x1f4, PAYLOAD / 16); /* syssize */
    put16(0x1fe, 0xaa55);       /* boot_flag */
    img[0x200] = 0xeb;          /* jmp ... */
    img[0x201] = 0x26c - 0x202; /* ... to the end of the header */
    memcpy(img + 0x202, "HdrS", 4);
    put16(0x206, 0x020f); /* version */
    img[0x211] = LOADED_HIGH | CAN_USE_HEAP;
    put16(0x224, 0x1234);     /* heap_end_ptr: cleared by the loader */
    put32(0x22c, 0x7fffffff); /* initrd_addr_max */
    put32(0x230, 0x200000);   /* kernel_alignment */
    img[0x234] = 1;           /* relocatable_kernel */
    put16(0x236, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G);
    put32(0x238, 2047);       /* cmdline_size */
    put64(0x250, 0xdeadbeef); /* setup_data: cleared by the loader */
    put64(0x258, PREF);       /* pref_address */
    put32(0x260, INIT_SIZE);  /* init_size */
    for (size_t i = 0; i < PAYLOAD; i++)
        img[SETUP + i] = (uint8_t)(i * 7 + 3);
}

static int setup(void **state)
{
    (void)state;
    build();
    for (size_t i = 0; i < sizeof(initrd); i++)
        initrd[i] = (uint8_t)(i ^ 0x5a);
    err[0] = '\0';
    return guest_mem_init(&mem, 256 * MiB, X86_MMIO_HOLE_START);
}

static int teardown(void **state)
{
    (void)state;
    guest_mem_destroy(&mem);
    return 0;
}

static int load(size_t len, const char *cmdline, const uint8_t *rd, size_t rd_len,
                struct x86_boot_info *info)
{
    struct x86_boot_config cfg = {.kernel = img,
                                  .kernel_len = len,
                                  .initrd = rd,
                                  .initrd_len = rd_len,
                                  .cmdline = cmdline,
                                  .rsdp_gpa = 0xe0000};
    return x86_load_kernel(&mem, &cfg, info, err, sizeof(err));
}

static const struct boot_params *zero_page(void)
{
    return guest_mem_ptr(&mem, X86_ZERO_PAGE_ADDR, sizeof(struct boot_params));
}

static void expect_fail(size_t len, const char *cmdline, int ret, const char *msg)
{
    struct x86_boot_info info;

    assert_int_equal(load(len, cmdline, NULL, 0, &info), ret);
    if (!strstr(err, msg))
        fail_msg("message \"%s\" lacks \"%s\"", err, msg);
}

static void test_good_image(void **state)
{
    struct x86_boot_info info;
    const struct boot_params *bp;
    uint64_t rd_start = ALIGN_DOWN(256 * MiB - sizeof(initrd), 4096);

    (void)state;
    assert_int_equal(load(IMG_LEN, "console=ttyS0 quiet", initrd, sizeof(initrd), &info), 0);
    assert_string_equal(err, "");
    assert_string_equal(info.format, "bzImage");
    assert_int_equal(info.mode, X86_ENTRY_LINUX64);
    assert_int_equal(info.entry, PREF + 0x200);
    assert_int_equal(info.boot_struct, X86_ZERO_PAGE_ADDR);
    assert_int_equal(info.kernel_start, PREF);
    assert_int_equal(info.kernel_end, PREF + INIT_SIZE);
    assert_int_equal(info.initrd_start, rd_start);
    assert_int_equal(info.initrd_size, sizeof(initrd));
    assert_memory_equal(guest_mem_ptr(&mem, PREF, PAYLOAD), img + SETUP, PAYLOAD);
    assert_memory_equal(guest_mem_ptr(&mem, rd_start, sizeof(initrd)), initrd, sizeof(initrd));
    assert_string_equal(guest_mem_ptr(&mem, X86_CMDLINE_ADDR, 1), "console=ttyS0 quiet");

    bp = zero_page();
    assert_memory_equal(&bp->hdr.header, "HdrS", 4);
    assert_int_equal(bp->hdr.version, 0x020f);
    assert_int_equal(bp->hdr.boot_flag, 0xaa55);
    assert_int_equal(bp->hdr.type_of_loader, 0xff);
    assert_int_equal(bp->hdr.loadflags, LOADED_HIGH);
    assert_int_equal(bp->hdr.heap_end_ptr, 0);
    assert_int_equal(bp->hdr.setup_data, 0);
    assert_int_equal(bp->hdr.cmd_line_ptr, X86_CMDLINE_ADDR);
    assert_int_equal(bp->ext_cmd_line_ptr, 0);
    assert_int_equal(bp->hdr.ramdisk_image, rd_start);
    assert_int_equal(bp->hdr.ramdisk_size, sizeof(initrd));
    assert_int_equal(bp->ext_ramdisk_image, 0);
    assert_int_equal(bp->ext_ramdisk_size, 0);
    assert_int_equal(bp->hdr.init_size, INIT_SIZE);
    assert_int_equal(bp->hdr.cmdline_size, 2047);
    assert_int_equal(bp->acpi_rsdp_addr, 0xe0000);
    assert_int_equal(bp->sentinel, 0);
    assert_int_equal(bp->e820_entries, 3);
    assert_int_equal(bp->e820_table[2].addr, X86_HIMEM_START);
    assert_int_equal(bp->e820_table[2].size, 255 * MiB);
}

static void test_setup_sects_zero_means_four(void **state)
{
    struct x86_boot_info info;

    (void)state;
    img[0x1f1] = 0;
    assert_int_equal(load(IMG_LEN, "", NULL, 0, &info), 0);
    assert_memory_equal(guest_mem_ptr(&mem, PREF, PAYLOAD), img + SETUP, PAYLOAD);
    assert_int_equal(info.initrd_start, 0);
    assert_int_equal(zero_page()->hdr.ramdisk_image, 0);
}

static void test_trailing_signature_ignored(void **state)
{
    struct x86_boot_info info;

    (void)state;
    /* Signed kernels carry data after setup + syssize * 16; only the payload is loaded. */
    memset(img + IMG_LEN, 0xee, 4096);
    assert_int_equal(load(IMG_LEN + 4096, "", NULL, 0, &info), 0);
    assert_int_equal(*(uint8_t *)guest_mem_ptr(&mem, PREF + PAYLOAD, 1), 0);
}

static void test_fixed_kernel_at_1mib(void **state)
{
    struct x86_boot_info info;

    (void)state;
    img[0x234] = 0; /* not relocatable: loaded at 1 MiB, runs at pref_address */
    assert_int_equal(load(IMG_LEN, "", NULL, 0, &info), 0);
    assert_int_equal(info.entry, X86_HIMEM_START + 0x200);
    assert_int_equal(info.kernel_start, X86_HIMEM_START);
    assert_int_equal(info.kernel_end, PREF + INIT_SIZE);
    assert_int_equal(zero_page()->hdr.code32_start, X86_HIMEM_START);
    assert_memory_equal(guest_mem_ptr(&mem, X86_HIMEM_START, PAYLOAD), img + SETUP, PAYLOAD);
}

static void test_pref_rounded_to_alignment(void **state)
{
    struct x86_boot_info info;

    (void)state;
    put64(0x258, PREF + 0x1000);
    assert_int_equal(load(IMG_LEN, "", NULL, 0, &info), 0);
    assert_int_equal(info.entry, PREF + 2 * MiB + 0x200);
}

static void test_old_protocol_has_no_rsdp(void **state)
{
    struct x86_boot_info info;

    (void)state;
    put16(0x206, 0x020c);
    assert_int_equal(load(IMG_LEN, "", NULL, 0, &info), 0);
    assert_int_equal(zero_page()->acpi_rsdp_addr, 0);
}

static void test_initrd_addr_max(void **state)
{
    struct x86_boot_info info;

    (void)state;
    put32(0x22c, 8 * MiB - 1);
    assert_int_equal(load(IMG_LEN, "", initrd, sizeof(initrd), &info), 0);
    assert_int_equal(info.initrd_start, ALIGN_DOWN(8 * MiB - sizeof(initrd), 4096));
    assert_true(info.initrd_start + info.initrd_size <= 8 * MiB);
}

static void test_initrd_below_kernel(void **state)
{
    struct x86_boot_info info;

    (void)state;
    /* The kernel takes everything from 16 MiB to the top of RAM: the initrd goes below it. */
    put32(0x260, 240 * MiB);
    assert_int_equal(load(IMG_LEN, "", initrd, sizeof(initrd), &info), 0);
    assert_int_equal(info.kernel_end, 256 * MiB);
    assert_int_equal(info.initrd_start, ALIGN_DOWN(PREF - sizeof(initrd), 4096));
    assert_memory_equal(guest_mem_ptr(&mem, info.initrd_start, sizeof(initrd)), initrd,
                        sizeof(initrd));
}

static void test_initrd_too_big(void **state)
{
    struct x86_boot_info info;

    (void)state;
    /* The loader refuses before reading the initrd, so a short buffer stands in for 300 MiB. */
    assert_int_equal(load(IMG_LEN, "", initrd, 300 * MiB, &info), -ENOMEM);
    assert_non_null(strstr(err, "initrd of 300 MiB does not fit below 0x10000000 in 256 MiB"));
    /* No room beside a kernel filling [1 MiB, top) either. */
    img[0x234] = 0;
    put32(0x260, 240 * MiB);
    assert_int_equal(load(IMG_LEN, "", initrd, sizeof(initrd), &info), -ENOMEM);
    assert_non_null(strstr(err, "initrd of 13 KiB does not fit"));
}

static void test_cmdline_limits(void **state)
{
    struct x86_boot_info info;
    char *line = malloc(3001);

    (void)state;
    memset(line, 'a', 3000);
    line[3000] = '\0';
    expect_fail(IMG_LEN, line, -E2BIG,
                "command line is 3000 bytes; this kernel accepts at most 2047");
    line[2047] = '\0';
    assert_int_equal(load(IMG_LEN, line, NULL, 0, &info), 0);
    assert_int_equal(strlen(guest_mem_ptr(&mem, X86_CMDLINE_ADDR, 2048)), 2047);
    /* A kernel accepting more than kiln's buffer is held to X86_CMDLINE_MAX. */
    put32(0x238, 0xffffffff);
    line[2047] = 'a';
    assert_int_equal(load(IMG_LEN, line, NULL, 0, &info), 0);
    free(line);
    line = malloc(X86_CMDLINE_MAX + 1);
    memset(line, 'b', X86_CMDLINE_MAX);
    line[X86_CMDLINE_MAX] = '\0';
    expect_fail(IMG_LEN, line, -E2BIG, "at most 65535");
    free(line);
}

static void test_truncated(void **state)
{
    (void)state;
    expect_fail(0x207, "", -EINVAL, "boot protocol 0.00 is too old");
    expect_fail(0x240, "", -EINVAL, "setup header ends at 0x240 in a 576-byte file");
    img[0x201] = 0x40; /* header claims to end at 0x242 */
    expect_fail(IMG_LEN, "", -EINVAL, "setup header ends at 0x242");
    build();
    expect_fail(0x800, "", -EINVAL, "2560 bytes of setup, but the file is only 2048 bytes");
    img[0x1f1] = 200;
    expect_fail(IMG_LEN, "", -EINVAL, "setup_sects 200");
    expect_fail(0, "", -EINVAL, "kernel image is empty");
}

static void test_bad_magic(void **state)
{
    (void)state;
    memcpy(img + 0x202, "HdrX", 4);
    expect_fail(IMG_LEN, "", -EINVAL, "no \"HdrS\" setup header");
    put16(0x1fe, 0x1234);
    expect_fail(IMG_LEN, "", -EINVAL, "neither a bzImage");
}

static void test_header_refusals(void **state)
{
    (void)state;
    put16(0x206, 0x0204);
    expect_fail(IMG_LEN, "", -EINVAL, "boot protocol 2.04 is too old; kiln needs 2.12 or later");
    build();
    put16(0x236, XLF_CAN_BE_LOADED_ABOVE_4G);
    expect_fail(IMG_LEN, "", -EINVAL, "no 64-bit entry point (XLF_KERNEL_64 clear");
    build();
    img[0x211] = 0;
    expect_fail(IMG_LEN, "", -EINVAL, "lack LOADED_HIGH");
    build();
    put32(0x1f4, PAYLOAD / 16 + 1);
    expect_fail(IMG_LEN, "", -EINVAL, "syssize 0x1001 means a payload of 65552 bytes, but 65536");
    put32(0x1f4, 0xffffffff);
    expect_fail(IMG_LEN, "", -EINVAL, "syssize 0xffffffff");
    put32(0x1f4, 0);
    expect_fail(IMG_LEN, "", -EINVAL, "syssize 0 means a payload of 0 bytes");
    build();
    put32(0x260, PAYLOAD - 1);
    expect_fail(IMG_LEN, "", -EINVAL, "init_size 0xffff is smaller than the 65536-byte payload");
    build();
    put32(0x230, 0x300000);
    expect_fail(IMG_LEN, "", -EINVAL, "kernel_alignment 0x300000 is not a power of two");
    put32(0x230, 0);
    expect_fail(IMG_LEN, "", -EINVAL, "kernel_alignment 0 is not");
    build();
    put64(0x258, 0x10000);
    expect_fail(IMG_LEN, "", -EINVAL, "pref_address 0x10000 is below 1 MiB");
}

static void test_ram_too_small(void **state)
{
    (void)state;
    put32(0x260, 250 * MiB);
    expect_fail(IMG_LEN, "", -ENOMEM, "but RAM below the MMIO hole ends at 0x10000000 (256 MiB)");
    build();
    put64(0x258, UINT64_MAX - 0x1000);
    expect_fail(IMG_LEN, "", -ENOMEM, "give the VM more memory");
    build();
    guest_mem_destroy(&mem);
    assert_int_equal(guest_mem_init(&mem, 16 * MiB, X86_MMIO_HOLE_START), 0);
    expect_fail(IMG_LEN, "", -ENOMEM, "the kernel needs RAM up to 0x1800000");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_image, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setup_sects_zero_means_four, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailing_signature_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fixed_kernel_at_1mib, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pref_rounded_to_alignment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_protocol_has_no_rsdp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_initrd_addr_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_initrd_below_kernel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_initrd_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmdline_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_magic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ram_too_small, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
