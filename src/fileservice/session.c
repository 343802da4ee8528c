/* session.c: the file service's per-connection state machine (docs/file-service.md): the version
 * handshake, then GetFileInfo and ReadFile answered from the backings. No I/O on the socket here,
 * so every message and error is tested without one. */
#include <errno.h>
#include <unistd.h>

#include "fileservice.h"

static uint32_t status_of(int err)
{
    switch (err) {
    case 0:
        return KILN_FS_SUCCESS;
    case -ENOENT:
        return KILN_FS_NOT_FOUND;
    case -EXDEV:
    case -ELOOP:
    case -ENAMETOOLONG:
        return KILN_FS_INVALID_PATH;
    default:
        return KILN_FS_IO_ERROR;
    }
}

/* The first backing that knows the path answers. */
static int lookup(struct fsvc_backing *backings, const struct fsvc_request *req, bool want_fd,
                  struct fsvc_node *node)
{
    char path[KILN_FS_MAX_PATH + 1];
    int ret = -ENOENT;

    if (fsvc_path_normalize(req->path, req->path_len, path, sizeof(path)) < 0)
        return -EINVAL;
    for (struct fsvc_backing *b = backings; b && ret == -ENOENT; b = b->next)
        ret = b->ops->lookup(b, path, want_fd, node);
    return ret;
}

static size_t file_info(struct fsvc_backing *backings, const struct fsvc_request *req, uint8_t *out)
{
    struct fsvc_node node;
    int ret = lookup(backings, req, false, &node);

    if (ret == -EINVAL)
        return fsvc_encode_file_info_response(out, KILN_FS_INVALID_PATH, 0, 0);
    if (ret < 0)
        return fsvc_encode_file_info_response(out, status_of(ret), 0, 0);
    if (node.kind == FSVC_OTHER)
        return fsvc_encode_file_info_response(out, KILN_FS_NOT_A_FILE, 0, 0);
    return fsvc_encode_file_info_response(
        out, KILN_FS_SUCCESS, node.kind == FSVC_DIR ? KILN_FS_FLAG_DIRECTORY : 0, node.size);
}

static size_t read_file(struct fsvc_backing *backings, const struct fsvc_request *req, uint8_t *out)
{
    uint8_t *data = out + sizeof(struct kiln_fs_read_file_response);
    struct fsvc_node node;
    uint32_t status = KILN_FS_SUCCESS;
    size_t want, got = 0;
    int ret;

    if (req->byte_count > KILN_FS_MAX_READ)
        return fsvc_encode_read_file_response(out, KILN_FS_READ_TOO_LARGE, 0);
    ret = lookup(backings, req, true, &node);
    if (ret == -EINVAL)
        return fsvc_encode_read_file_response(out, KILN_FS_INVALID_PATH, 0);
    if (ret < 0)
        return fsvc_encode_read_file_response(out, status_of(ret), 0);
    if (node.kind != FSVC_FILE || node.fd < 0) {
        status = KILN_FS_NOT_A_FILE;
        goto out;
    }
    if (req->offset > node.size) {
        status = KILN_FS_READ_PAST_END;
        goto out;
    }
    want = node.size - req->offset < req->byte_count ? (size_t)(node.size - req->offset)
                                                     : req->byte_count;
    while (got < want) {
        ssize_t n = pread(node.fd, data + got, want - got, (off_t)(req->offset + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            status = KILN_FS_IO_ERROR;
            got = 0;
            break;
        }
        if (n == 0) /* the file shrank since fstat: send what there is */
            break;
        got += (size_t)n;
    }
out:
    if (node.owned && node.fd >= 0)
        close(node.fd);
    return fsvc_encode_read_file_response(out, status, status == KILN_FS_SUCCESS ? got : 0);
}

int fsvc_session_handle(enum fsvc_state *state, struct fsvc_backing *backings,
                        const struct fsvc_request *req, uint8_t *out, const char **why)
{
    *why = NULL;
    if (*state == FSVC_STATE_VERSION) {
        if (req->type != KILN_FS_MSG_VERSION_REQUEST) {
            *why = "request before a supported VersionRequest";
            return -EPROTO;
        }
        if (req->version != KILN_FS_VERSION)
            return (int)fsvc_encode_version_response(out, KILN_FS_VERSION_UNSUPPORTED);
        *state = FSVC_STATE_READY;
        return (int)fsvc_encode_version_response(out, KILN_FS_VERSION_SUPPORTED);
    }
    switch (req->type) {
    case KILN_FS_MSG_GET_FILE_INFO:
        return (int)file_info(backings, req, out);
    case KILN_FS_MSG_READ_FILE:
        return (int)read_file(backings, req, out);
    default:
        *why = "VersionRequest on a connection already past the handshake";
        return -EPROTO;
    }
}
