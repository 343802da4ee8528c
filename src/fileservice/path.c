/* path.c: the file service's path rules (docs/file-service.md): what a guest may name, turned
 * into one canonical form before any backing sees it. */
#include <errno.h>
#include <string.h>

#include "fileservice.h"

bool fsvc_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        uint8_t c = s[i];
        uint32_t cp;
        unsigned n;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false; /* a continuation byte first, an overlong 2-byte lead, or > U+10FFFF */
        }
        if (len - i <= n)
            return false;
        for (unsigned k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false; /* overlong, out of range or a surrogate */
        i += n + 1;
    }
    return true;
}

int fsvc_path_normalize(const uint8_t *in, size_t len, char *out, size_t outlen)
{
    size_t o = 0, i = 0;

    if (len > KILN_FS_MAX_PATH || memchr(in, '\0', len) || !fsvc_utf8_valid(in, len))
        return -EINVAL;
    while (i < len) {
        size_t start, clen;

        while (i < len && (in[i] == '/' || in[i] == '\\'))
            i++;
        start = i;
        while (i < len && in[i] != '/' && in[i] != '\\')
            i++;
        clen = i - start;
        if (clen == 0 || (clen == 1 && in[start] == '.'))
            continue;
        if (clen == 2 && in[start] == '.' && in[start + 1] == '.')
            return -EINVAL;
        if (clen > KILN_FS_MAX_NAME)
            return -EINVAL;
        if (o + (o ? 1 : 0) + clen + 1 > outlen)
            return -ENAMETOOLONG;
        if (o)
            out[o++] = '/';
        memcpy(out + o, in + start, clen);
        o += clen;
    }
    if (outlen == 0)
        return -ENAMETOOLONG;
    out[o] = '\0';
    return 0;
}
