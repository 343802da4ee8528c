/* rt.c: the unikernel runtime: start-up (argv and environment through cmdsize/cmdval), hypercall
 * stubs, a bump allocator and a small printf. Under QEMU's PVH path (no kiln) output goes to the
 * COM1 UART and exit to QEMU's isa-debug-exit port. */
#include "rt.h"

#define DEBUG_EXIT_PORT 0xf4 /* QEMU -device isa-debug-exit,iobase=0xf4: exits (code << 1) | 1 */

const struct kiln_hvc_boot_info *uk_boot_info;
extern char _end[];
static uintptr_t heap, heap_end;
static int pvh;

long uk_write(int fd, const void *buf, size_t len)
{
    struct kiln_hvc_write a = {.fd = (uint64_t)fd, .buf = (uintptr_t)buf, .len = len};

    if (pvh) {
        const char *p = buf;
        for (size_t i = 0; i < len; i++)
            uk_outb(KILN_HVC_UART_PORT, (uint8_t)p[i]);
        return (long)len;
    }
    uk_hvc(KILN_HVC_WRITE, &a);
    return a.ret;
}

long uk_read(int fd, void *buf, size_t len)
{
    struct kiln_hvc_read a = {.fd = (uint64_t)fd, .buf = (uintptr_t)buf, .len = len};

    if (pvh)
        return -38; /* ENOSYS */
    uk_hvc(KILN_HVC_READ, &a);
    return a.ret;
}

long uk_open(const char *path, unsigned flags, unsigned mode)
{
    struct kiln_hvc_open a = {
        .path = (uintptr_t)path, .path_len = strlen(path), .flags = flags, .mode = mode};

    if (pvh)
        return -38;
    uk_hvc(KILN_HVC_OPEN, &a);
    return a.ret;
}

long uk_close(int fd)
{
    struct kiln_hvc_close a = {.fd = (uint64_t)fd};

    uk_hvc(KILN_HVC_CLOSE, &a);
    return a.ret;
}

long uk_lseek(int fd, long offset, unsigned whence)
{
    struct kiln_hvc_lseek a = {.fd = (uint64_t)fd, .offset = offset, .whence = whence};

    uk_hvc(KILN_HVC_LSEEK, &a);
    return a.ret;
}

long uk_unlink(const char *path)
{
    struct kiln_hvc_unlink a = {.path = (uintptr_t)path, .path_len = strlen(path)};

    if (pvh)
        return -38;
    uk_hvc(KILN_HVC_UNLINK, &a);
    return a.ret;
}

long uk_fstat(int fd, struct kiln_hvc_fstat *st)
{
    memset(st, 0, sizeof(*st));
    st->fd = (uint64_t)fd;
    uk_hvc(KILN_HVC_FSTAT, st);
    return st->ret;
}

uint64_t uk_clock_ns(void)
{
    struct kiln_hvc_clock a = {0};

    if (pvh)
        return 0;
    uk_hvc(KILN_HVC_CLOCK, &a);
    return a.monotonic_ns;
}

void uk_exit(int code)
{
    struct kiln_hvc_exit a = {.code = (uint64_t)code};

    if (pvh) {
        __asm__ volatile("outl %0, %1" : : "a"((uint32_t)code), "Nd"((uint16_t)DEBUG_EXIT_PORT));
    } else {
        uk_hvc(KILN_HVC_EXIT, &a);
    }
    for (;;)
        __asm__ volatile("cli; hlt");
}

/* ---- libc subset ---------------------------------------------------------------------------- */
void *memcpy(void *dst, const void *src, size_t n)
{
    void *ret = dst;

    __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
    return ret;
}

void *memset(void *dst, int c, size_t n)
{
    char *d = dst;
    while (n--)
        *d++ = (char)c;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    char *d = dst;
    const char *s = src;
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        while (n--)
            d[n] = s[n];
    }
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] - y[i];
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b || !*a)
            return (unsigned char)*a - (unsigned char)*b;
    }
    return 0;
}

long atol(const char *s)
{
    long v = 0, sign = 1;
    if (*s == '-')
        sign = -1, s++;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (*s++ - '0');
    return v * sign;
}

void *malloc(size_t n)
{
    uintptr_t p = (heap + 15) & ~(uintptr_t)15;
    if (p + n < p || p + n > heap_end)
        return NULL;
    heap = p + n;
    return (void *)p;
}

/* ---- printf ------------------------------------------------------------------------------------
 */
struct out {
    char *buf;
    size_t size, len;
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void put_num(struct out *o, unsigned long long v, unsigned base, int neg, int width,
                    char pad)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (neg)
        tmp[n++] = '-';
    while (width-- > n)
        put(o, pad);
    while (n)
        put(o, tmp[--n]);
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = {buf, size, 0};

    for (; *fmt; fmt++) {
        int lng = 0, width = 0;
        char pad = ' ';
        if (*fmt != '%') {
            put(&o, *fmt);
            continue;
        }
        fmt++;
        if (*fmt == '0')
            pad = '0', fmt++;
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l')
            lng++, fmt++;
        if (*fmt == 'z')
            lng = 2, fmt++;
        switch (*fmt) {
        case 'd': {
            long long v = lng ? va_arg(ap, long long) : va_arg(ap, int);
            put_num(&o, v < 0 ? -(unsigned long long)v : (unsigned long long)v, 10, v < 0, width,
                    pad);
            break;
        }
        case 'u':
        case 'x': {
            unsigned long long v = lng ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned);
            put_num(&o, v, *fmt == 'x' ? 16 : 10, 0, width, pad);
            break;
        }
        case 'p':
            put(&o, '0');
            put(&o, 'x');
            put_num(&o, (uintptr_t)va_arg(ap, void *), 16, 0, 0, ' ');
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            while (*s)
                put(&o, *s++);
            break;
        }
        case 'c':
            put(&o, (char)va_arg(ap, int));
            break;
        case '%':
            put(&o, '%');
            break;
        default:
            put(&o, '%');
            put(&o, *fmt);
            if (!*fmt)
                fmt--;
        }
    }
    if (size)
        buf[o.len < size ? o.len : size - 1] = '\0';
    return (int)o.len;
}

int printf(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    uk_write(1, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
    return n;
}

int puts(const char *s)
{
    uk_write(1, s, strlen(s));
    uk_write(1, "\n", 1);
    return 0;
}

/* ---- start-up -----------------------------------------------------------------------------------
 */
void rt_start(const struct kiln_hvc_boot_info *info, int is_pvh);

void rt_start(const struct kiln_hvc_boot_info *info, int is_pvh)
{
    static char *pvh_argv[] = {"app", NULL};
    static char *no_env[] = {NULL};
    struct kiln_hvc_cmdsize size = {0};
    struct kiln_hvc_cmdval val = {0};
    char **argv = pvh_argv, **envp = no_env;
    int argc = 1;

    pvh = is_pvh;
    heap = (uintptr_t)_end;
    if (pvh) {
        heap_end = 1u << 30; /* the PVH stub maps the first 1 GiB */
        heap_end = heap + (16u << 20) < heap_end ? heap + (16u << 20) : heap_end;
        uk_exit(main(argc, argv, envp));
    }
    uk_boot_info = info;
    /* The stack starts at the top of RAM; leave it 1 MiB. */
    heap_end = info->mem_size - (1u << 20);
    uk_hvc(KILN_HVC_CMDSIZE, &size);
    argv = malloc((size.argc + 1) * 8);
    envp = malloc((size.envc + 1) * 8);
    val.argv = (uintptr_t)argv;
    val.argbuf = (uintptr_t)malloc(size.arg_bytes);
    val.envp = (uintptr_t)envp;
    val.envbuf = (uintptr_t)malloc(size.env_bytes);
    if (!argv || !envp || !val.argbuf || !val.envbuf) {
        puts("rt: no memory for the arguments");
        uk_exit(1);
    }
    uk_hvc(KILN_HVC_CMDVAL, &val);
    argc = (int)size.argc;
    uk_exit(main(argc, argv, envp));
}
