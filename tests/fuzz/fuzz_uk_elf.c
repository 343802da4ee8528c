/* fuzz_uk_elf.c: libFuzzer target feeding arbitrary bytes to uk_elf_load, the unikernel loader. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/lib.h"
#include "unikernel/uk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MEM (16 * MiB)

static struct guest_mem mem;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct uk_image img, check;
    uint8_t *copy;
    char err[256];
    int ret, ret_check;

    if (!mem.nregions && guest_mem_init(&mem, MEM, 3 * GiB) < 0)
        abort();
    /* An exact-size heap copy, so ASan catches any read past the image's end. */
    copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    ret_check = uk_elf_load(NULL, MEM, copy, size, &check, err, sizeof(err));
    ret = uk_elf_load(&mem, MEM, copy, size, &img, err, sizeof(err));
    /* The check-only pass must agree with the loading one. */
    if (ret != ret_check)
        abort();
    if (ret == 0) {
        /* A success describes an image inside guest memory, above the boot area. */
        if (img.image_end > MEM || img.entry < KILN_HVC_LOAD_MIN || img.entry >= img.image_end ||
            img.abi_version != KILN_HVC_VERSION || !img.nsegments ||
            !guest_mem_ptr(&mem, img.entry, 1))
            abort();
    } else if (!memchr(err, '\0', sizeof(err)) || !err[0]) {
        abort(); /* every refusal has a message */
    }
    free(copy);
    return 0;
}
