/* hvc.c: the unikernel hypercalls of include/kiln/hvc.h. Every guest address goes through
 * guest_mem_ptr; argument structs are copied in before use and their OUT fields written back. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/lib.h"
#include "uk.h"

static const char *const call_names[KILN_HVC_NCALLS] = {
    [KILN_HVC_WRITE] = "write",   [KILN_HVC_READ] = "read",   [KILN_HVC_OPEN] = "open",
    [KILN_HVC_CLOSE] = "close",   [KILN_HVC_LSEEK] = "lseek", [KILN_HVC_UNLINK] = "unlink",
    [KILN_HVC_FSTAT] = "fstat",   [KILN_HVC_EXIT] = "exit",   [KILN_HVC_CMDSIZE] = "cmdsize",
    [KILN_HVC_CMDVAL] = "cmdval", [KILN_HVC_CLOCK] = "clock",
};

/* Ends the VM with `code`; returns 1, "stopped", for the dispatch chain. */
static int stop(struct uk_hvc *h, int code)
{
    h->exit_code = code;
    return 1;
}

static int bad_pointer(struct uk_hvc *h, unsigned nr, const char *what, uint64_t gpa, uint64_t len)
{
    log_error("unikernel: %s: %s [%#llx,+%#llx) is not in guest memory (%llu MiB); stopping the "
              "guest",
              call_names[nr], what, (unsigned long long)gpa, (unsigned long long)len,
              (unsigned long long)(h->mem->size >> 20));
    return stop(h, UK_EXIT_BAD_POINTER);
}

static int bad_call(struct uk_hvc *h, unsigned nr, const char *why)
{
    log_error("unikernel: %s: malformed call: %s; stopping the guest",
              nr < KILN_HVC_NCALLS && call_names[nr] ? call_names[nr] : "hypercall", why);
    return stop(h, UK_EXIT_BAD_HYPERCALL);
}

/* The guest's buffer [gpa, +len) as a host pointer, or NULL (then the caller stops the guest). */
static void *buffer(struct uk_hvc *h, uint64_t gpa, uint64_t len)
{
    return guest_mem_ptr(h->mem, gpa, len);
}

/* The path argument of OPEN and UNLINK: a length within 1..KILN_HVC_MAX_PATH and bytes inside
 * guest RAM. Returns 0 with *path set, or the stop code of a malformed call or a bad pointer. */
static int path_arg(struct uk_hvc *h, unsigned nr, uint64_t gpa, uint64_t len, const char **path)
{
    if (len == 0 || len > KILN_HVC_MAX_PATH)
        return bad_call(h, nr, "path length outside 1..KILN_HVC_MAX_PATH");
    *path = buffer(h, gpa, len);
    return *path ? 0 : bad_pointer(h, nr, "path", gpa, len);
}

static int std_fd(const struct uk_hvc *h, uint64_t fd, bool writing)
{
    if (fd == 0)
        return writing ? -EBADF : h->in_fd;
    if (fd == 1 || fd == 2)
        return writing ? (fd == 1 ? h->out_fd : h->err_fd) : -EBADF;
    return uk_files_host_fd(&h->files, fd);
}

static int64_t do_io(struct uk_hvc *h, unsigned nr, uint64_t fd, uint64_t gpa, uint64_t len,
                     int *stopped)
{
    bool writing = nr == KILN_HVC_WRITE;
    void *buf;
    int host;
    ssize_t n;

    if (len > KILN_HVC_MAX_IO) {
        *stopped = bad_call(h, nr, "length above KILN_HVC_MAX_IO");
        return 0;
    }
    buf = buffer(h, gpa, len);
    if (!buf) {
        *stopped = bad_pointer(h, nr, "buffer", gpa, len);
        return 0;
    }
    host = std_fd(h, fd, writing);
    if (host < 0)
        return host;
    if (writing && fd < UK_FD_FIRST) {
        /* The terminal or a pipe: all of it, so output is never cut short. */
        int ret = write_all(host, buf, len);
        return ret < 0 ? ret : (int64_t)len;
    }
    n = writing ? write(host, buf, len) : read(host, buf, len);
    return n < 0 ? -errno : n;
}

static int64_t do_fstat(struct uk_hvc *h, struct kiln_hvc_fstat *a)
{
    struct stat st;
    int host;

    if (a->fd < UK_FD_FIRST)
        return a->fd <= 2 ? 0 : -EBADF;
    host = uk_files_host_fd(&h->files, a->fd);
    if (host < 0)
        return host;
    if (fstat(host, &st) < 0)
        return -errno;
    a->size = (uint64_t)st.st_size;
    a->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    a->kind = KILN_HVC_S_REG;
    a->mode = st.st_mode & 07777;
    return 0;
}

static void list_size(char *const *list, unsigned n, uint64_t *bytes)
{
    *bytes = 0;
    for (unsigned i = 0; i < n; i++)
        *bytes += strlen(list[i]) + 1;
}

/* Copies a string list into the guest: pointers at vec_gpa, strings at buf_gpa. */
static int put_list(struct uk_hvc *h, char *const *list, unsigned n, uint64_t vec_gpa,
                    uint64_t buf_gpa)
{
    uint64_t bytes, *vec;
    uint8_t *buf;
    uint64_t pos = 0;

    list_size(list, n, &bytes);
    vec = buffer(h, vec_gpa, ((uint64_t)n + 1) * 8);
    if (!vec)
        return bad_pointer(h, KILN_HVC_CMDVAL, "pointer array", vec_gpa, ((uint64_t)n + 1) * 8);
    buf = buffer(h, buf_gpa, bytes);
    if (!buf)
        return bad_pointer(h, KILN_HVC_CMDVAL, "string buffer", buf_gpa, bytes);
    for (unsigned i = 0; i < n; i++) {
        size_t len = strlen(list[i]) + 1;
        uint64_t p = buf_gpa + pos;
        memcpy(buf + pos, list[i], len);
        memcpy(&vec[i], &p, 8);
        pos += len;
    }
    memset(&vec[n], 0, 8);
    return 0;
}

/* Copies the argument struct of call nr in, runs the call, copies it back. */
#define ARGS(type)                                                                                 \
    type a;                                                                                        \
    void *a_guest = buffer(h, gpa, sizeof(a));                                                     \
    if (!a_guest)                                                                                  \
        return bad_pointer(h, nr, "argument struct", gpa, sizeof(a));                              \
    memcpy(&a, a_guest, sizeof(a))
#define DONE() memcpy(a_guest, &a, sizeof(a))

static int call(struct uk_hvc *h, unsigned nr, uint64_t gpa, int64_t *result)
{
    int stopped = 0;

    switch (nr) {
    case KILN_HVC_WRITE:
    case KILN_HVC_READ: {
        ARGS(struct kiln_hvc_write);
        a.ret = do_io(h, nr, a.fd, a.buf, a.len, &stopped);
        if (stopped)
            return stopped;
        *result = a.ret;
        DONE();
        return 0;
    }
    case KILN_HVC_OPEN: {
        ARGS(struct kiln_hvc_open);
        const char *path;
        int stopped_path = path_arg(h, nr, a.path, a.path_len, &path);
        if (stopped_path)
            return stopped_path;
        *result = a.ret = uk_files_open(&h->files, path, a.path_len, a.flags, a.mode);
        DONE();
        return 0;
    }
    case KILN_HVC_UNLINK: {
        ARGS(struct kiln_hvc_unlink);
        const char *path;
        int stopped_path = path_arg(h, nr, a.path, a.path_len, &path);
        if (stopped_path)
            return stopped_path;
        *result = a.ret = uk_files_unlink(&h->files, path, a.path_len);
        DONE();
        return 0;
    }
    case KILN_HVC_CLOSE: {
        ARGS(struct kiln_hvc_close);
        *result = a.ret = uk_files_close(&h->files, a.fd);
        DONE();
        return 0;
    }
    case KILN_HVC_LSEEK: {
        ARGS(struct kiln_hvc_lseek);
        int host;
        if (a.pad)
            return bad_call(h, nr, "padding is not zero");
        host = a.fd < UK_FD_FIRST ? -ESPIPE : uk_files_host_fd(&h->files, a.fd);
        if (host >= 0 && a.whence > KILN_HVC_SEEK_END)
            host = -EINVAL;
        if (host >= 0) {
            off_t off = lseek(host, (off_t)a.offset,
                              a.whence == KILN_HVC_SEEK_SET   ? SEEK_SET
                              : a.whence == KILN_HVC_SEEK_CUR ? SEEK_CUR
                                                              : SEEK_END);
            a.ret = off < 0 ? -errno : off;
        } else {
            a.ret = host;
        }
        *result = a.ret;
        DONE();
        return 0;
    }
    case KILN_HVC_FSTAT: {
        ARGS(struct kiln_hvc_fstat);
        a.size = 0;
        a.mtime_ns = 0;
        a.kind = a.mode = 0;
        *result = a.ret = do_fstat(h, &a);
        DONE();
        return 0;
    }
    case KILN_HVC_EXIT: {
        ARGS(struct kiln_hvc_exit);
        if (a.code > KILN_HVC_EXIT_MAX)
            return bad_call(h, nr, "exit code above KILN_HVC_EXIT_MAX (239)");
        *result = (int64_t)a.code;
        return stop(h, (int)a.code);
    }
    case KILN_HVC_CMDSIZE: {
        ARGS(struct kiln_hvc_cmdsize);
        a.argc = h->argc;
        a.envc = h->envc;
        list_size(h->argv, h->argc, &a.arg_bytes);
        list_size(h->envp, h->envc, &a.env_bytes);
        DONE();
        return 0;
    }
    case KILN_HVC_CMDVAL: {
        ARGS(struct kiln_hvc_cmdval);
        int ret = put_list(h, h->argv, h->argc, a.argv, a.argbuf);
        if (ret == 0)
            ret = put_list(h, h->envp, h->envc, a.envp, a.envbuf);
        if (ret)
            return ret;
        a.ret = 0;
        DONE();
        return 0;
    }
    case KILN_HVC_CLOCK: {
        ARGS(struct kiln_hvc_clock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        a.realtime_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
        a.monotonic_ns = time_now_ns() - h->start_ns;
        DONE();
        return 0;
    }
    default:
        return bad_call(h, nr, "no such call");
    }
}

int uk_hvc_dispatch(struct uk_hvc *h, unsigned nr, uint64_t gpa)
{
    int64_t result = 0;
    int ret;

    h->ncalls++;
    ret = call(h, nr, gpa, &result);
    if (h->trace)
        log_warn("unikernel: trace: %s(%#llx) = %lld%s",
                 nr < KILN_HVC_NCALLS && call_names[nr] ? call_names[nr] : "?",
                 (unsigned long long)gpa, (long long)result, ret ? " [stop]" : "");
    return ret;
}

void uk_hvc_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct uk_hvc *h = opaque;
    uint32_t gpa;

    if (!is_write || len != 4) {
        if (!is_write)
            memset(data, 0xff, len);
        bad_call(h, (unsigned)offset,
                 is_write ? "not a 32-bit write (use outl)" : "a read of a hypercall port");
        return;
    }
    memcpy(&gpa, data, 4);
    uk_hvc_dispatch(h, (unsigned)offset, gpa);
}
