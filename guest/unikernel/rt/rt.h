/* rt.h: kiln's tiny freestanding unikernel runtime: hypercall stubs and the libc subset the samples
 * use (docs/unikernel.md). A program defines main(argc, argv, envp); returning from it exits. */
#ifndef KILN_UK_RT_H
#define KILN_UK_RT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/hvc.h"

int main(int argc, char **argv, char **envp);

/* The boot info kiln passed, or NULL when booted through PVH elsewhere (QEMU). */
extern const struct kiln_hvc_boot_info *uk_boot_info;

/* Raw call: the argument struct's address to the call's port. */
static inline void uk_hvc(unsigned nr, void *arg)
{
    __asm__ volatile("outl %0, %1"
                     :
                     : "a"((uint32_t)(uintptr_t)arg), "Nd"((uint16_t)KILN_HVC_PORT(nr))
                     : "memory");
}
static inline void uk_outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

long uk_write(int fd, const void *buf, size_t len);
long uk_read(int fd, void *buf, size_t len);
long uk_open(const char *path, unsigned flags, unsigned mode);
long uk_close(int fd);
long uk_lseek(int fd, long offset, unsigned whence);
long uk_unlink(const char *path);
long uk_fstat(int fd, struct kiln_hvc_fstat *st);
uint64_t uk_clock_ns(void); /* monotonic, since the VM started */
__attribute__((noreturn)) void uk_exit(int code);

void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
long atol(const char *s);
void *malloc(size_t n); /* bump allocator; never freed */

int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int puts(const char *s);

#endif
