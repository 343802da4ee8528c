/* fuzz_control.c: libFuzzer target for the control protocol's decoders: any datagram, with any
 * descriptor count, decodes to a request/response or a documented errno, and what decodes
 * re-encodes to the same bytes. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control/control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_errno(int ret)
{
    if (ret != 0 && ret != -ENOTCONN && ret != -EMSGSIZE && ret != -EOPNOTSUPP && ret != -EINVAL &&
        ret != -EBADF)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kiln_ctl_request req;
    struct kiln_ctl_response resp;
    uint8_t out[KILN_CTL_MSG_SIZE];
    unsigned nfds;
    int ret;

    if (size == 0)
        return 0;
    /* The first byte chooses the descriptor count; the rest is the datagram. */
    nfds = data[0] % 3;
    data++;
    size--;
    ret = ctl_decode_request(data, size, nfds, &req);
    check_errno(ret);
    if (ret == 0) {
        ctl_encode_request(&req, out);
        if (memcmp(out, data, KILN_CTL_MSG_SIZE) || ctl_request_needs_fd(req.type) != (nfds == 1))
            abort();
        (void)ctl_request_name(req.type);
    }
    ret = ctl_decode_response(data, size, nfds, &resp);
    check_errno(ret);
    if (ret == 0) {
        ctl_encode_response(&resp, out);
        if (memcmp(out, data, KILN_CTL_MSG_SIZE))
            abort();
        (void)ctl_state_name(resp.slot);
    }
    return 0;
}
