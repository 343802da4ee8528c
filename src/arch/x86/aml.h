/* aml.h: a tiny ACPI Machine Language emitter, enough for kiln's DSDT (names, packages, scopes,
 * devices, buffers and the few resource descriptors the guest needs). Encodings follow ACPI 6.x
 * chapter 20 (AML) and 6.4 (resource descriptors); see docs/platform-tables.md. */
#ifndef KILN_X86_AML_H
#define KILN_X86_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes go into buf[0..cap). Running out of room (or a malformed name) sets `bad` and leaves the
 * buffer in an unspecified state; callers check `bad` once at the end. */
struct aml {
    uint8_t *buf;
    size_t cap;
    size_t len;
    bool bad;
};

void aml_init(struct aml *a, uint8_t *buf, size_t cap);
void aml_bytes(struct aml *a, const void *data, size_t n);
void aml_u8(struct aml *a, uint8_t v);
void aml_u16(struct aml *a, uint16_t v);
void aml_u32(struct aml *a, uint32_t v);

/* PkgLength encoding of a package whose body is `body` bytes long (the encoding counts itself).
 * Writes 1..4 bytes to out and returns how many, or 0 when the package is too large (2^28). */
unsigned aml_pkglen_encode(size_t body, uint8_t out[4]);

/* Opens a PkgLength-prefixed construct after its opcode has been emitted; returns a mark for
 * aml_close(), which inserts the PkgLength in front of everything emitted since. */
size_t aml_open(struct aml *a);
void aml_close(struct aml *a, size_t mark);

/* Data objects. */
void aml_integer(struct aml *a, uint64_t v);    /* ZeroOp, OneOp or the smallest prefix */
void aml_string(struct aml *a, const char *s);  /* StringPrefix, ASCII, NUL */
void aml_eisaid(struct aml *a, const char *id); /* "PNP0501" -> compressed EISA id DWord */
void aml_buffer(struct aml *a, const uint8_t *data, size_t n);

/* A NameString: optional leading '\' then one 4-character NameSeg ([A-Z_][A-Z0-9_]{3}). */
void aml_namestring(struct aml *a, const char *name);
/* Name(name, ...): emit the value right after. */
void aml_name(struct aml *a, const char *name);
/* Package(){...} with `count` elements, Scope(name){...}, Device(name){...}: emit the contents,
 * then aml_close(mark). */
size_t aml_package(struct aml *a, uint8_t count);
size_t aml_scope(struct aml *a, const char *name);
size_t aml_device(struct aml *a, const char *name);

/* Resource descriptors for a ResourceTemplate() buffer. */
void aml_res_io16(struct aml *a, uint16_t base, uint8_t len);         /* IO(Decode16, ...) */
void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len); /* Memory32Fixed(RW) */
void aml_res_irq_edge_high(struct aml *a, uint32_t gsi); /* Interrupt(Consumer, Edge, High, Excl) */
void aml_res_end(struct aml *a);                         /* EndTag */

#endif
