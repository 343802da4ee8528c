/* fuzz_frame.c: libFuzzer target for the agent protocol's frame decoder (src/sandbox/frame.c):
 * any byte stream splits into frames or a documented status, every payload parser returns 0 or
 * a status without reading out of bounds, and what parses re-encodes consistently. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int st)
{
    if (st < 0 || st > KILN_AGENT_E_CANCELLED)
        abort();
}

/* Copies the payload to an exact-size heap block so ASan sees any read past its end. */
static void payload(uint16_t type, const uint8_t *src, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    if (!p)
        return;
    memcpy(p, src, len);
    const char *path, *msg, *name;
    size_t mlen;
    union {
        struct kiln_agent_hello hello;
        struct kiln_agent_ready ready;
        struct kiln_agent_error error;
        struct kiln_agent_window window;
        struct kiln_agent_started started;
        struct kiln_agent_signal signal;
        struct kiln_agent_resize resize;
        struct kiln_agent_exit exit;
        struct kiln_agent_stat stat;
        struct kiln_agent_mkdir mkdir;
        struct kiln_agent_remove remove;
    } u;
    struct agent_exec_msg em;
    struct agent_file_msg fm;
    int st;
    /* Every parser on every payload, whatever the type says: more coverage per input. */
    check(agent_parse_hello(p, len, &u.hello));
    check(agent_parse_ready(p, len, &u.ready));
    check(agent_parse_error(p, len, &u.error, &msg, &mlen));
    check(agent_parse_window(p, len, &u.window));
    check(agent_parse_started(p, len, &u.started));
    check(agent_parse_signal(p, len, &u.signal));
    check(agent_parse_resize(p, len, &u.resize));
    check(agent_parse_exit(p, len, &u.exit));
    check(agent_parse_stat(p, len, &u.stat));
    check(st = agent_parse_path(p, len, &path));
    if (st == 0 && strlen(path) != len - 1)
        abort();
    check(st = agent_parse_list_entry(p, len, &u.stat, &name));
    if (st == 0 && name && (strlen(name) == 0 || strchr(name, '/')))
        abort();
    check(agent_parse_mkdir(p, len, &u.mkdir, &path));
    check(agent_parse_remove(p, len, &u.remove, &path));
    check(agent_parse_file_open(p, len, &fm));
    check(st = agent_parse_exec(p, len, &em));
    if (st == 0) {
        const char **argv = calloc((size_t)em.h.argc + 1, sizeof(*argv));
        const char **envp = calloc((size_t)em.h.envc + 1, sizeof(*envp));
        if (argv && envp) {
            agent_exec_vectors(&em, argv, envp);
            if (argv[em.h.argc] || envp[em.h.envc] || em.cwd[0] != '/')
                abort();
            /* What parsed re-encodes to the same payload. */
            uint8_t *re = malloc(AGENT_FRAME_MAX);
            struct kiln_agent_exec h = em.h;
            ssize_t n = re ? agent_exec_build(re, AGENT_FRAME_MAX, 1, &h, argv, envp,
                                              strcmp(em.cwd, "/") ? em.cwd : NULL)
                           : -1;
            if (re && n > 0 && strcmp(em.cwd, "/") &&
                ((size_t)n != AGENT_HDR_SIZE + len || memcmp(re + AGENT_HDR_SIZE, p, len)))
                abort();
            free(re);
        }
        free(argv);
        free(envp);
    }
    (void)type;
    free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        struct kiln_agent_hdr h;
        const uint8_t *p = NULL;
        ssize_t n = agent_frame_next(data + off, size - off, KILN_AGENT_MAX_PAYLOAD, &h, &p);
        if (n == 0)
            break;
        if (n < 0) {
            check((int)-n);
            break;
        }
        if ((size_t)n != AGENT_HDR_SIZE + h.len || p != data + off + AGENT_HDR_SIZE)
            abort();
        payload(h.type, p, h.len);
        off += (size_t)n;
    }
    /* The raw input as one payload as well, so parsers see inputs without a valid header. */
    if (size <= KILN_AGENT_MAX_PAYLOAD)
        payload(0, data, size);
    return 0;
}
