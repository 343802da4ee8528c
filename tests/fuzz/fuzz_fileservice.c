/* fuzz_fileservice.c: libFuzzer target for the file service's message decoder, path rules and
 * state machine: any byte stream decodes message by message into a request or a documented
 * errno, what decodes re-encodes to the same bytes, and the session answers within the response
 * buffer (no backings: no filesystem access). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fileservice/fileservice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[KILN_FS_MAX_RESPONSE];
static uint8_t again[KILN_FS_MAX_REQUEST];

static void reencode(const uint8_t *msg, int len, const struct fsvc_request *r)
{
    size_t n = 0;

    switch (r->type) {
    case KILN_FS_MSG_VERSION_REQUEST:
        n = fsvc_encode_version_request(again, sizeof(again), r->version);
        break;
    case KILN_FS_MSG_GET_FILE_INFO:
        n = fsvc_encode_get_file_info(again, sizeof(again), (const char *)r->path, r->path_len);
        break;
    case KILN_FS_MSG_READ_FILE:
        n = fsvc_encode_read_file(again, sizeof(again), r->byte_count, r->offset,
                                  (const char *)r->path, r->path_len);
        break;
    default:
        abort();
    }
    if (n != (size_t)len || memcmp(again, msg, n))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum fsvc_state state = size && (data[0] & 1) ? FSVC_STATE_READY : FSVC_STATE_VERSION;
    char path[KILN_FS_MAX_PATH + 1];
    struct fsvc_request req;
    const char *why;

    while (size) {
        int ret = fsvc_decode_request(data, size, &req, &why);
        if (ret == 0)
            break;
        if (ret < 0) {
            if ((ret != -EMSGSIZE && ret != -EBADMSG && ret != -EPROTO) || !why)
                abort();
            break;
        }
        if ((size_t)ret > size || (size_t)ret > KILN_FS_MAX_REQUEST)
            abort();
        reencode(data, ret, &req);
        if (req.path && fsvc_path_normalize(req.path, req.path_len, path, sizeof(path)) == 0) {
            /* The canonical form never holds "..", "//", a backslash or a NUL. */
            if (strstr(path, "//") || strchr(path, '\\') || strlen(path) > req.path_len ||
                !strcmp(path, "..") || !strncmp(path, "../", 3) || strstr(path, "/../") ||
                (strlen(path) >= 3 && !strcmp(path + strlen(path) - 3, "/..")))
                abort();
        }
        int n = fsvc_session_handle(&state, NULL, &req, out, &why);
        if (n < 0 ? (n != -EPROTO || !why) : (n < 16 || (size_t)n > sizeof(out)))
            abort();
        if (n < 0)
            break;
        data += ret;
        size -= (size_t)ret;
    }
    return 0;
}
