/* aml.c: the tiny AML emitter behind kiln's DSDT (see aml.h). */
#include <string.h>

#include "aml.h"

enum {
    AML_ZERO = 0x00,
    AML_ONE = 0x01,
    AML_NAME = 0x08,
    AML_BYTE = 0x0a,
    AML_WORD = 0x0b,
    AML_DWORD = 0x0c,
    AML_STRING = 0x0d,
    AML_QWORD = 0x0e,
    AML_SCOPE = 0x10,
    AML_BUFFER = 0x11,
    AML_PACKAGE = 0x12,
    AML_EXT = 0x5b,
    AML_EXT_DEVICE = 0x82,
    AML_ROOT = 0x5c,
};

/* Small and large resource descriptor tags (ACPI 6.4 "Resource Data Types"). */
enum {
    RES_IO = 0x47,
    RES_END = 0x79,
    RES_MEM32_FIXED = 0x86,
    RES_EXT_IRQ = 0x89,
};

void aml_init(struct aml *a, uint8_t *buf, size_t cap)
{
    *a = (struct aml){.buf = buf, .cap = cap};
}

void aml_bytes(struct aml *a, const void *data, size_t n)
{
    if (a->bad || n > a->cap - a->len) {
        a->bad = true;
        return;
    }
    memcpy(a->buf + a->len, data, n);
    a->len += n;
}

void aml_u8(struct aml *a, uint8_t v)
{
    aml_bytes(a, &v, 1);
}

void aml_u16(struct aml *a, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    aml_bytes(a, b, sizeof(b));
}

void aml_u32(struct aml *a, uint32_t v)
{
    aml_u16(a, (uint16_t)v);
    aml_u16(a, (uint16_t)(v >> 16));
}

unsigned aml_pkglen_encode(size_t body, uint8_t out[4])
{
    /* One byte holds 6 bits of length; with n bytes the first keeps 4 bits and each further
     * byte 8, and bits 7:6 of the first say n-1. The length includes the encoding itself. */
    static const size_t max[5] = {0, 0x3f, 0xfff, 0xfffff, 0xfffffff};
    unsigned n;

    for (n = 1; n <= 4; n++) {
        if (body <= max[n] - n)
            break;
    }
    if (n > 4)
        return 0;
    size_t total = body + n;
    if (n == 1) {
        out[0] = (uint8_t)total;
        return 1;
    }
    out[0] = (uint8_t)(((n - 1) << 6) | (total & 0xf));
    for (unsigned i = 1; i < n; i++)
        out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
    return n;
}

size_t aml_open(struct aml *a)
{
    return a->len;
}

void aml_close(struct aml *a, size_t mark)
{
    uint8_t enc[4];
    unsigned n;

    if (a->bad || mark > a->len)
        goto bad;
    n = aml_pkglen_encode(a->len - mark, enc);
    if (n == 0 || n > a->cap - a->len)
        goto bad;
    memmove(a->buf + mark + n, a->buf + mark, a->len - mark);
    memcpy(a->buf + mark, enc, n);
    a->len += n;
    return;
bad:
    a->bad = true;
}

void aml_integer(struct aml *a, uint64_t v)
{
    if (v <= 1) {
        aml_u8(a, v ? AML_ONE : AML_ZERO);
    } else if (v <= UINT8_MAX) {
        aml_u8(a, AML_BYTE);
        aml_u8(a, (uint8_t)v);
    } else if (v <= UINT16_MAX) {
        aml_u8(a, AML_WORD);
        aml_u16(a, (uint16_t)v);
    } else if (v <= UINT32_MAX) {
        aml_u8(a, AML_DWORD);
        aml_u32(a, (uint32_t)v);
    } else {
        aml_u8(a, AML_QWORD);
        aml_u32(a, (uint32_t)v);
        aml_u32(a, (uint32_t)(v >> 32));
    }
}

void aml_string(struct aml *a, const char *s)
{
    aml_u8(a, AML_STRING);
    aml_bytes(a, s, strlen(s) + 1);
}

void aml_eisaid(struct aml *a, const char *id)
{
    /* Three letters of 5 bits each ('A' = 1) and four hex digits, stored big-endian. */
    uint32_t v = 0;

    if (strlen(id) != 7) {
        a->bad = true;
        return;
    }
    for (unsigned i = 0; i < 3; i++) {
        if (id[i] < 'A' || id[i] > 'Z')
            a->bad = true;
        v = (v << 5) | (uint32_t)(id[i] - '@');
    }
    for (unsigned i = 3; i < 7; i++) {
        const char *hex = "0123456789ABCDEF", *p = memchr(hex, id[i], 16);
        if (!p)
            a->bad = true;
        v = (v << 4) | (uint32_t)(p ? p - hex : 0);
    }
    aml_u8(a, AML_DWORD);
    aml_u32(a, __builtin_bswap32(v));
}

void aml_buffer(struct aml *a, const uint8_t *data, size_t n)
{
    aml_u8(a, AML_BUFFER);
    size_t mark = aml_open(a);
    aml_integer(a, n);
    aml_bytes(a, data, n);
    aml_close(a, mark);
}

static bool seg_char(char c, bool first)
{
    return (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

void aml_namestring(struct aml *a, const char *name)
{
    if (name[0] == '\\') {
        aml_u8(a, AML_ROOT);
        name++;
    }
    if (strlen(name) != 4) {
        a->bad = true;
        return;
    }
    for (unsigned i = 0; i < 4; i++) {
        if (!seg_char(name[i], i == 0))
            a->bad = true;
    }
    aml_bytes(a, name, 4);
}

void aml_name(struct aml *a, const char *name)
{
    aml_u8(a, AML_NAME);
    aml_namestring(a, name);
}

size_t aml_package(struct aml *a, uint8_t count)
{
    aml_u8(a, AML_PACKAGE);
    size_t mark = aml_open(a);
    aml_u8(a, count);
    return mark;
}

size_t aml_scope(struct aml *a, const char *name)
{
    aml_u8(a, AML_SCOPE);
    size_t mark = aml_open(a);
    aml_namestring(a, name);
    return mark;
}

size_t aml_device(struct aml *a, const char *name)
{
    aml_u8(a, AML_EXT);
    aml_u8(a, AML_EXT_DEVICE);
    size_t mark = aml_open(a);
    aml_namestring(a, name);
    return mark;
}

void aml_res_io16(struct aml *a, uint16_t base, uint8_t len)
{
    aml_u8(a, RES_IO);
    aml_u8(a, 0x01);  /* decodes 16 address bits */
    aml_u16(a, base); /* minimum and maximum base: the range is fixed */
    aml_u16(a, base);
    aml_u8(a, 1); /* alignment */
    aml_u8(a, len);
}

void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len)
{
    aml_u8(a, RES_MEM32_FIXED);
    aml_u16(a, 9);   /* body length */
    aml_u8(a, 0x01); /* read-write */
    aml_u32(a, base);
    aml_u32(a, len);
}

void aml_res_irq_edge_high(struct aml *a, uint32_t gsi)
{
    aml_u8(a, RES_EXT_IRQ);
    aml_u16(a, 6);
    aml_u8(a, 0x03); /* consumer, edge-triggered; active-high and exclusive are the zero bits */
    aml_u8(a, 1);    /* one interrupt */
    aml_u32(a, gsi);
}

void aml_res_end(struct aml *a)
{
    aml_u8(a, RES_END);
    aml_u8(a, 0); /* checksum 0: "treat as correct", as iasl emits */
}
