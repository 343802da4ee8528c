/* test_agent_files.c: kiln-agent's file operations as a host process over a socket pair: a 64 MiB
 * write/read round trip checked by sha256, modes, ownership, append, offsets, mkdir -p, stat,
 * list, remove, cancellation and every path and permission error (docs/agent-protocol.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "agent_client.h"

static char root[64];
static char pathbuf[4][256];

static const char *P(int slot, const char *rel)
{
    snprintf(pathbuf[slot], sizeof(pathbuf[slot]), "%s/%s", root, rel);
    return pathbuf[slot];
}

struct fr {       /* the answer to one file request */
    uint32_t err; /* ERROR status, 0 if none */
    char msg[256];
    bool ok; /* OK */
    struct kiln_agent_stat st;
    uint8_t *data; /* FILE_READ data (cap bytes kept) */
    size_t cap, len;
    unsigned entries; /* LIST entries */
    char names[512];  /* LIST names, space-separated */
};

/* Sends a request and collects its answer until its final frame. FILE_WRITE streams `data`. */
static void req(struct ac *a, uint16_t type, uint32_t id, const void *head, size_t hlen,
                const char *path, size_t plen, const uint8_t *data, size_t dlen, struct fr *r)
{
    ac_queue(a, type, 0, id, head, hlen, path, plen);
    uint64_t credit = KILN_AGENT_INITIAL_WINDOW;
    size_t off = 0;
    bool sent_end = type != KILN_AGENT_FILE_WRITE;
    for (;;) {
        while (!sent_end && ac_unsent(a) < 512 * 1024) {
            size_t n = dlen - off < 200000 ? dlen - off : 200000;
            if (n > credit)
                n = (size_t)credit;
            bool end = off + n == dlen;
            if (!n && !end)
                break;
            ac_queue(a, KILN_AGENT_FILE_DATA, end ? KILN_AGENT_F_END : 0, id, data + off, n, NULL,
                     0);
            off += n;
            credit -= n;
            sent_end = end;
        }
        struct kiln_agent_hdr h;
        const uint8_t *p;
        assert_true(ac_next(a, &h, &p, 10000));
        if (h.id != id)
            continue; /* WINDOWs of earlier requests, PONGs */
        switch (h.type) {
        case KILN_AGENT_WINDOW:
            credit += ((const struct kiln_agent_window *)(const void *)p)->bytes;
            continue;
        case KILN_AGENT_ERROR:
            memcpy(&r->err, p, 4);
            snprintf(r->msg, sizeof(r->msg), "%.*s", (int)h.len - 8, (const char *)p + 8);
            return;
        case KILN_AGENT_OK:
            r->ok = true;
            return;
        case KILN_AGENT_STAT_RESULT:
            assert_int_equal(agent_parse_stat(p, h.len, &r->st), 0);
            return;
        case KILN_AGENT_LIST_ENTRY: {
            const char *name;
            assert_int_equal(agent_parse_list_entry(p, h.len, &r->st, &name), 0);
            if (!name) {
                assert_true(h.flags & KILN_AGENT_F_END);
                return;
            }
            r->entries++;
            size_t used = strlen(r->names);
            snprintf(r->names + used, sizeof(r->names) - used, "%s ", name);
            continue;
        }
        case KILN_AGENT_FILE_DATA: {
            size_t keep = r->cap - r->len < h.len ? r->cap - r->len : h.len;
            memcpy(r->data + r->len, p, keep);
            r->len += keep;
            if (h.len) {
                struct kiln_agent_window w = {KILN_AGENT_FILE_DATA, h.len};
                ac_queue(a, KILN_AGENT_WINDOW, 0, id, &w, sizeof(w), NULL, 0);
            }
            if (h.flags & KILN_AGENT_F_END)
                return;
            continue;
        }
        default:
            fail_msg("unexpected %s", agent_type_name(h.type));
        }
    }
}

static void fwrite_(struct ac *a, uint32_t flags, uint32_t mode, uint32_t uid, const char *path,
                    const void *data, size_t len, struct fr *r)
{
    struct kiln_agent_file_open o = {.flags = flags, .mode = mode, .uid = uid, .gid = uid};
    memset(r, 0, sizeof(*r));
    req(a, KILN_AGENT_FILE_WRITE, 11, &o, sizeof(o), path, strlen(path) + 1, data, len, r);
}

static void fread_(struct ac *a, uint32_t flags, uint32_t uid, uint64_t off, uint64_t len,
                   const char *path, uint8_t *buf, size_t cap, struct fr *r)
{
    struct kiln_agent_file_open o = {
        .flags = flags, .uid = uid, .gid = uid, .offset = off, .length = len};
    memset(r, 0, sizeof(*r));
    r->data = buf;
    r->cap = cap;
    req(a, KILN_AGENT_FILE_READ, 12, &o, sizeof(o), path, strlen(path) + 1, NULL, 0, r);
}

static void pathop(struct ac *a, uint16_t type, const void *head, size_t hlen, const char *path,
                   struct fr *r)
{
    memset(r, 0, sizeof(*r));
    req(a, type, 13, head, hlen, path, strlen(path) + 1, NULL, 0, r);
}

/* sha256 of a buffer with the system's sha256sum (no crypto code of our own in the tests). */
static void sha256_hex(const uint8_t *data, size_t len, char out[65])
{
    char tmp[] = "/tmp/kiln-sha-XXXXXX", cmd[128];
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, data + off, len - off);
        assert_true(n > 0);
        off += (size_t)n;
    }
    close(fd);
    snprintf(cmd, sizeof(cmd), "sha256sum %s", tmp);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%64s", out), 1);
    pclose(f);
    unlink(tmp);
}

static void test_roundtrip_64mib(void **state)
{
    (void)state;
    const size_t size = 64u << 20;
    uint8_t *data = malloc(size), *back = malloc(size);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < size; i++) { /* xorshift: every byte value, no pattern */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        data[i] = (uint8_t)x;
    }
    struct ac a;
    ac_spawn(&a);
    struct fr r;
    fwrite_(&a, KILN_AGENT_FILE_MKDIRS, 0600, 0, P(0, "deep/er/big.bin"), data, size, &r);
    assert_true(r.ok);
    fread_(&a, 0, 0, 0, 0, P(0, "deep/er/big.bin"), back, size, &r);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.len, size);
    char want[65], got[65], inside[65] = "";
    sha256_hex(data, size, want);
    sha256_hex(back, r.len, got);
    assert_string_equal(want, got);
    /* and the agent's own view of the file: sha256sum run through EXEC */
    struct xr e = {0};
    xr_simple(&a, &e, 14, 0, (const char *[]){"sha256sum", P(0, "deep/er/big.bin"), NULL});
    memcpy(inside, e.out[0], 64);
    assert_string_equal(want, inside);
    xr_free(&e);
    pathop(&a, KILN_AGENT_STAT, NULL, 0, P(0, "deep/er/big.bin"), &r);
    assert_int_equal(r.st.size, size);
    assert_int_equal(r.st.mode, 0100600);
    free(data);
    free(back);
    ac_close(&a);
}

static void test_write_modes(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    struct fr r;
    uint8_t buf[64];
    fwrite_(&a, 0, 0, 0, P(0, "f"), "hello ", 6, &r);
    assert_true(r.ok);
    fwrite_(&a, KILN_AGENT_FILE_APPEND, 0, 0, P(0, "f"), "world", 5, &r);
    assert_true(r.ok);
    fread_(&a, 0, 0, 0, 0, P(0, "f"), buf, sizeof(buf), &r);
    assert_int_equal(r.len, 11);
    assert_memory_equal(buf, "hello world", 11);
    fread_(&a, 0, 0, 6, 3, P(0, "f"), buf, sizeof(buf), &r); /* offset and length */
    assert_int_equal(r.len, 3);
    assert_memory_equal(buf, "wor", 3);
    fread_(&a, 0, 0, 100, 0, P(0, "f"), buf, sizeof(buf), &r); /* past the end: empty */
    assert_int_equal(r.err, 0);
    assert_int_equal(r.len, 0);
    pathop(&a, KILN_AGENT_STAT, NULL, 0, P(0, "f"), &r);
    assert_int_equal(r.st.mode, 0100644); /* mode 0 means 0644 */
    fwrite_(&a, 0, 0, 0, P(0, "empty"), NULL, 0, &r);
    assert_true(r.ok);
    if (geteuid() == 0) {
        fwrite_(&a, KILN_AGENT_FILE_CHOWN, 0751, 1234, P(0, "owned"), "x", 1, &r);
        assert_true(r.ok);
        pathop(&a, KILN_AGENT_STAT, NULL, 0, P(0, "owned"), &r);
        assert_int_equal(r.st.uid, 1234);
        assert_int_equal(r.st.gid, 1234);
        assert_int_equal(r.st.mode, 0100751);
    }
    ac_close(&a);
}

static void test_dirs(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    struct fr r;
    struct kiln_agent_mkdir p1 = {0, 1}, p0 = {0700, 0};
    pathop(&a, KILN_AGENT_MKDIR, &p1, 8, P(0, "d/e/f"), &r);
    assert_true(r.ok);
    pathop(&a, KILN_AGENT_MKDIR, &p1, 8, P(0, "d/e/f"), &r); /* -p: existing is fine */
    assert_true(r.ok);
    pathop(&a, KILN_AGENT_MKDIR, &p0, 8, P(0, "d/e/f"), &r);
    assert_int_equal(r.err, KILN_AGENT_E_EXISTS);
    pathop(&a, KILN_AGENT_MKDIR, &p0, 8, P(0, "d/g"), &r);
    assert_true(r.ok);
    pathop(&a, KILN_AGENT_STAT, NULL, 0, P(0, "d/g"), &r);
    assert_int_equal(r.st.mode, 040700);
    pathop(&a, KILN_AGENT_MKDIR, &p0, 8, P(0, "nope/x"), &r);
    assert_int_equal(r.err, KILN_AGENT_E_NOT_FOUND);
    fwrite_(&a, 0, 0, 0, P(0, "d/file"), "1", 1, &r);
    pathop(&a, KILN_AGENT_MKDIR, &p1, 8, P(0, "d/file/sub"), &r);
    assert_int_equal(r.err, KILN_AGENT_E_NOT_DIR);
    pathop(&a, KILN_AGENT_MKDIR, &p1, 8, P(0, "d/file"), &r);
    assert_int_equal(r.err, KILN_AGENT_E_EXISTS);

    pathop(&a, KILN_AGENT_LIST, NULL, 0, P(0, "d"), &r);
    assert_int_equal(r.entries, 3);
    assert_non_null(strstr(r.names, "e "));
    assert_non_null(strstr(r.names, "g "));
    assert_non_null(strstr(r.names, "file "));
    pathop(&a, KILN_AGENT_LIST, NULL, 0, P(0, "d/file"), &r);
    assert_int_equal(r.err, KILN_AGENT_E_NOT_DIR);
    /* a big directory streams through the bounded queue */
    pathop(&a, KILN_AGENT_MKDIR, &p0, 8, P(0, "many"), &r);
    for (int i = 0; i < 3000; i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "many/entry-with-a-long-name-%05d", i);
        close(open(P(1, rel), O_CREAT | O_WRONLY, 0644));
    }
    pathop(&a, KILN_AGENT_LIST, NULL, 0, P(0, "many"), &r);
    assert_int_equal(r.entries, 3000);

    struct kiln_agent_remove r0 = {0, 0}, r1 = {1, 0};
    pathop(&a, KILN_AGENT_REMOVE, &r0, 8, P(0, "d"), &r);
    assert_int_equal(r.err, KILN_AGENT_E_NOT_EMPTY);
    pathop(&a, KILN_AGENT_REMOVE, &r0, 8, P(0, "d/file"), &r);
    assert_true(r.ok);
    pathop(&a, KILN_AGENT_REMOVE, &r0, 8, P(0, "d/g"), &r); /* an empty directory */
    assert_true(r.ok);
    symlink("/etc", P(0, "d/e/link"));
    pathop(&a, KILN_AGENT_REMOVE, &r1, 8, P(0, "d"), &r);
    assert_true(r.ok);
    struct stat sb;
    assert_int_equal(stat("/etc/passwd", &sb), 0); /* the link was removed, not followed */
    pathop(&a, KILN_AGENT_REMOVE, &r1, 8, P(0, "d"), &r);
    assert_int_equal(r.err, KILN_AGENT_E_NOT_FOUND);
    pathop(&a, KILN_AGENT_REMOVE, &r1, 8, P(0, "many"), &r);
    assert_true(r.ok);
    ac_close(&a);
}

static void test_errors(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    struct fr r;
    uint8_t buf[16];
    fread_(&a, 0, 0, 0, 0, P(0, "missing"), buf, sizeof(buf), &r);
    assert_int_equal(r.err, KILN_AGENT_E_NOT_FOUND);
    assert_non_null(strstr(r.msg, "missing"));
    fread_(&a, 0, 0, 0, 0, root, buf, sizeof(buf), &r);
    assert_int_equal(r.err, KILN_AGENT_E_IS_DIR);
    fwrite_(&a, 0, 0, 0, root, "x", 1, &r);
    assert_int_equal(r.err, KILN_AGENT_E_IS_DIR);
    fwrite_(&a, 0, 0, 0, P(0, "no/such/dir/f"), "x", 1, &r);
    assert_int_equal(r.err, KILN_AGENT_E_NOT_FOUND);
    fwrite_(&a, 0, 0, 0, "relative/f", "x", 1, &r);
    assert_int_equal(r.err, KILN_AGENT_E_BAD_PATH);
    pathop(&a, KILN_AGENT_STAT, NULL, 0, P(0, "missing"), &r);
    assert_int_equal(r.err, KILN_AGENT_E_NOT_FOUND);
    memset(&r, 0, sizeof(r));
    req(&a, KILN_AGENT_STAT, 13, NULL, 0, "/a\0b", 5, NULL, 0, &r);
    assert_int_equal(r.err, KILN_AGENT_E_BAD_PATH);
    static char longp[KILN_AGENT_MAX_PATH + 2];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    pathop(&a, KILN_AGENT_STAT, NULL, 0, longp, &r);
    assert_int_equal(r.err, KILN_AGENT_E_BAD_PATH);
    mkfifo(P(0, "fifo"), 0600);
    fread_(&a, 0, 0, 0, 0, P(0, "fifo"), buf, sizeof(buf), &r);
    assert_int_equal(r.err, KILN_AGENT_E_IO);
    if (geteuid() == 0) { /* permission errors: the uid/gid of FILE_AS_USER */
        struct kiln_agent_mkdir m = {0700, 0};
        pathop(&a, KILN_AGENT_MKDIR, &m, 8, P(0, "private"), &r);
        fwrite_(&a, KILN_AGENT_FILE_AS_USER, 0, 65534, P(0, "private/f"), "x", 1, &r);
        assert_int_equal(r.err, KILN_AGENT_E_PERMISSION);
        fwrite_(&a, 0, 0600, 0, P(0, "secret"), "s", 1, &r);
        fread_(&a, KILN_AGENT_FILE_AS_USER, 65534, 0, 0, P(0, "secret"), buf, sizeof(buf), &r);
        assert_int_equal(r.err, KILN_AGENT_E_PERMISSION);
        fread_(&a, 0, 0, 0, 0, P(0, "secret"), buf, sizeof(buf), &r); /* root again after */
        assert_int_equal(r.len, 1);
        fwrite_(&a, KILN_AGENT_FILE_AS_USER, 0, 65534, "/tmp/kiln-as-user-ok", "x", 1, &r);
        assert_true(r.ok);
        unlink("/tmp/kiln-as-user-ok");
    }
    ac_close(&a);
}

static void test_cancel(void **state)
{
    (void)state;
    struct ac a;
    ac_spawn(&a);
    /* FILE_READ of an endless device without granting credit, then SIGNAL cancels it */
    struct kiln_agent_file_open o = {0};
    ac_queue(&a, KILN_AGENT_FILE_READ, 0, 5, &o, sizeof(o), "/dev/zero", 10);
    struct kiln_agent_hdr h;
    const uint8_t *p;
    uint64_t got = 0;
    while (ac_next(&a, &h, &p, 300) && h.type == KILN_AGENT_FILE_DATA)
        got += h.len;
    assert_int_equal(got, KILN_AGENT_INITIAL_WINDOW);
    struct kiln_agent_signal s = {SIGKILL, 0};
    ac_queue(&a, KILN_AGENT_SIGNAL, 0, 5, &s, sizeof(s), NULL, 0);
    assert_true(ac_next(&a, &h, &p, 5000));
    assert_int_equal(h.type, KILN_AGENT_ERROR);
    assert_int_equal(((const struct kiln_agent_error *)(const void *)p)->status,
                     KILN_AGENT_E_CANCELLED);
    /* data for a request that failed is dropped, not an error */
    ac_queue(&a, KILN_AGENT_FILE_DATA, 0, 5, "late", 4, NULL, 0);
    ac_queue(&a, KILN_AGENT_PING, 0, 0, "p", 1, NULL, 0);
    assert_true(ac_next(&a, &h, &p, 5000));
    assert_int_equal(h.type, KILN_AGENT_PONG);
    ac_close(&a);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/kiln-agent-files-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    return system(cmd);
}

int main(int argc, char **argv)
{
    (void)argc;
    agent_locate(argv[0]);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_64mib, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dirs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
