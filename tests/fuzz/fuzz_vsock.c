/* fuzz_vsock.c: libFuzzer target for the vsock device's tx path: packets as the guest puts them
 * on the tx queue (any header, any length, split over descriptors), against a device with a real
 * listening socket and one host listener a guest REQUEST can reach (port 1). Each input ends
 * with a driver reset, so connections never pile up across inputs. */
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/virtio/vsock.h"

#define MEM_SIZE (8 * 1024 * 1024)
#define QS       64
#define RING(q)  (0x1000 + (uint64_t)(q)*0x3000)
#define RXBUF    0x10000
#define TXBUF    0x80000

static struct guest_mem mem;
static struct evloop *loop;
static struct virtio_dev *dev;
static uint16_t aidx[3];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void *gp(uint64_t gpa, uint64_t len)
{
    return guest_mem_ptr(&mem, gpa, len);
}

static void offer(unsigned q, uint16_t head)
{
    struct vring_avail *a = gp(RING(q) + 0x1000, 6 + 2 * QS);
    a->ring[aidx[q] % QS] = head;
    a->idx = ++aidx[q];
}

static void start(void)
{
    char err[128];

    for (unsigned q = 0; q < 3; q++) {
        struct virtq *vq = &dev->queues[q];
        *vq = (struct virtq){.size = QS,
                             .desc_gpa = RING(q),
                             .avail_gpa = RING(q) + 0x1000,
                             .used_gpa = RING(q) + 0x2000,
                             .mem = &mem};
        memset(gp(RING(q), 0x3000), 0, 0x3000);
        aidx[q] = 0;
        if (virtq_validate(vq, VIRTQ_MAX_SIZE, err, sizeof(err)))
            abort();
        vq->ready = true;
    }
    dev->failed = false;
    dev->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                  VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
    /* 16 rx buffers of 4 KiB: enough for replies, few enough to exercise starvation. */
    for (unsigned i = 0; i < 16; i++) {
        struct vring_desc *d = gp(RING(0) + 16ULL * i, 16);
        *d = (struct vring_desc){RXBUF + i * 0x1100, 0x1100, VRING_DESC_F_WRITE, 0};
        offer(0, (uint16_t)i);
    }
    dev->ops->notify(dev, VSOCK_QUEUE_RX);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static char dir[] = "/tmp/kiln-fuzz-vsock-XXXXXX";
    char path[128], lpath[140];
    struct virtio_vsock_config cfg = {.guest_cid = 3, .uds_path = path};
    struct virtio_env env;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char err[256];
    int lfd;

    (void)argc, (void)argv;
    log_set_level(LOG_ERROR);
    mem.fd = -1;
    mem.nregions = 1;
    mem.regions[0] = (struct guest_region){.gpa = 0, .size = MEM_SIZE};
    mem.regions[0].hva = calloc(1, MEM_SIZE);
    mem.size = MEM_SIZE;
    loop = evloop_create();
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof(path), "%s/v.sock", dir);
    snprintf(lpath, sizeof(lpath), "%s_1", path);
    memcpy(sa.sun_path, lpath, strlen(lpath) + 1);
    lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 4096))
        abort();
    env = (struct virtio_env){.loop = loop, .mem = &mem};
    dev = virtio_vsock_create(&env, &cfg, err, sizeof(err));
    if (!dev) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    dev->mem = &mem;
    start();
    return 0;
}

/* Input: records of [flags:1][len:2 LE][bytes:len]. flags bit 0 splits the chain into two
 * descriptors at byte (flags >> 1); bit 7 runs the host-event poll after the packet. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned slot = 0;

    if (size && data[0] == 'C') { /* the host client's line parser, too */
        uint32_t port;
        vsock_parse_connect((const char *)data, size, &port);
        return 0;
    }
    while (size >= 3 && slot < QS) {
        uint8_t flags = data[0];
        size_t len = (size_t)(data[1] | data[2] << 8), split = (size_t)(flags >> 1) & 0x3f;
        uint64_t buf = TXBUF + (uint64_t)slot * 0x11000;

        data += 3, size -= 3;
        if (len > size)
            len = size;
        memcpy(gp(buf, len ? len : 1), data, len);
        if ((flags & 1) && split < len) {
            *(struct vring_desc *)gp(RING(1) + 16ULL * slot, 16) =
                (struct vring_desc){buf, (uint32_t)split, VRING_DESC_F_NEXT, (uint16_t)(slot + 1)};
            *(struct vring_desc *)gp(RING(1) + 16ULL * (slot + 1), 16) =
                (struct vring_desc){buf + split, (uint32_t)(len - split), 0, 0};
            offer(1, (uint16_t)slot);
            slot += 2;
        } else {
            *(struct vring_desc *)gp(RING(1) + 16ULL * slot, 16) =
                (struct vring_desc){buf, (uint32_t)len, 0, 0};
            offer(1, (uint16_t)slot);
            slot++;
        }
        dev->ops->notify(dev, VSOCK_QUEUE_TX);
        if (flags & 0x80)
            vsock_poll(dev);
        data += len, size -= len;
    }
    vsock_poll(dev);
    dev->ops->reset(dev);
    dev->status = 0;
    start();
    return 0;
}
