/* codec.c: the file service's wire codec (docs/file-service.md): explicit little-endian byte
 * order, every size checked before a field is read. */
#include <errno.h>
#include <string.h>

#include "fileservice.h"

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static void put_hdr(uint8_t *out, uint32_t size, uint16_t type)
{
    put32(out, size);
    put16(out + 4, type);
    put16(out + 6, 0);
}

int fsvc_decode_request(const uint8_t *buf, size_t len, struct fsvc_request *out, const char **why)
{
    uint32_t size;
    uint16_t type;

    memset(out, 0, sizeof(*out));
    *why = NULL;
    if (len < 4)
        return 0;
    size = get32(buf);
    if (size < sizeof(struct kiln_fs_hdr) || size > KILN_FS_MAX_REQUEST) {
        *why = size < sizeof(struct kiln_fs_hdr) ? "message size below the 8-byte header"
                                                 : "message larger than the largest request";
        return -EMSGSIZE;
    }
    if (len < size)
        return 0;
    type = get16(buf + 4);
    if (get16(buf + 6)) {
        *why = "reserved header field is not zero";
        return -EBADMSG;
    }
    out->type = type;
    switch (type) {
    case KILN_FS_MSG_VERSION_REQUEST:
        if (size != sizeof(struct kiln_fs_version_request)) {
            *why = "VersionRequest is not 16 bytes";
            return -EBADMSG;
        }
        out->version = get32(buf + 8);
        if (get32(buf + 12)) {
            *why = "VersionRequest reserved field is not zero";
            return -EBADMSG;
        }
        break;
    case KILN_FS_MSG_GET_FILE_INFO:
        out->path = buf + sizeof(struct kiln_fs_get_file_info);
        out->path_len = size - sizeof(struct kiln_fs_get_file_info);
        break;
    case KILN_FS_MSG_READ_FILE:
        if (size < sizeof(struct kiln_fs_read_file)) {
            *why = "ReadFile shorter than its 24 fixed bytes";
            return -EBADMSG;
        }
        out->byte_count = get32(buf + 8);
        if (get32(buf + 12)) {
            *why = "ReadFile reserved field is not zero";
            return -EBADMSG;
        }
        out->offset = get64(buf + 16);
        out->path = buf + sizeof(struct kiln_fs_read_file);
        out->path_len = size - sizeof(struct kiln_fs_read_file);
        break;
    case KILN_FS_MSG_VERSION_RESPONSE:
    case KILN_FS_MSG_GET_FILE_INFO_RESPONSE:
    case KILN_FS_MSG_READ_FILE_RESPONSE:
        *why = "a response type sent as a request";
        return -EPROTO;
    default:
        *why = "unknown message type";
        return -EPROTO;
    }
    return (int)size;
}

size_t fsvc_encode_version_response(uint8_t *out, uint32_t status)
{
    put_hdr(out, sizeof(struct kiln_fs_version_response), KILN_FS_MSG_VERSION_RESPONSE);
    put32(out + 8, status);
    put32(out + 12, 0);
    return sizeof(struct kiln_fs_version_response);
}

size_t fsvc_encode_file_info_response(uint8_t *out, uint32_t status, uint32_t flags, uint64_t size)
{
    put_hdr(out, sizeof(struct kiln_fs_get_file_info_response), KILN_FS_MSG_GET_FILE_INFO_RESPONSE);
    put32(out + 8, status);
    put32(out + 12, flags);
    put64(out + 16, size);
    return sizeof(struct kiln_fs_get_file_info_response);
}

size_t fsvc_encode_read_file_response(uint8_t *out, uint32_t status, uint32_t byte_count)
{
    size_t size = sizeof(struct kiln_fs_read_file_response) + byte_count;

    put_hdr(out, (uint32_t)size, KILN_FS_MSG_READ_FILE_RESPONSE);
    put32(out + 8, status);
    put32(out + 12, byte_count);
    return size;
}

size_t fsvc_encode_version_request(uint8_t *out, size_t outlen, uint32_t version)
{
    if (outlen < sizeof(struct kiln_fs_version_request))
        return 0;
    put_hdr(out, sizeof(struct kiln_fs_version_request), KILN_FS_MSG_VERSION_REQUEST);
    put32(out + 8, version);
    put32(out + 12, 0);
    return sizeof(struct kiln_fs_version_request);
}

size_t fsvc_encode_get_file_info(uint8_t *out, size_t outlen, const char *path, size_t path_len)
{
    size_t size = sizeof(struct kiln_fs_get_file_info) + path_len;

    if (outlen < size || size > UINT32_MAX)
        return 0;
    put_hdr(out, (uint32_t)size, KILN_FS_MSG_GET_FILE_INFO);
    memcpy(out + sizeof(struct kiln_fs_get_file_info), path, path_len);
    return size;
}

size_t fsvc_encode_read_file(uint8_t *out, size_t outlen, uint32_t byte_count, uint64_t offset,
                             const char *path, size_t path_len)
{
    size_t size = sizeof(struct kiln_fs_read_file) + path_len;

    if (outlen < size || size > UINT32_MAX)
        return 0;
    put_hdr(out, (uint32_t)size, KILN_FS_MSG_READ_FILE);
    put32(out + 8, byte_count);
    put32(out + 12, 0);
    put64(out + 16, offset);
    memcpy(out + sizeof(struct kiln_fs_read_file), path, path_len);
    return size;
}
