/* kvm.c: opening /dev/kvm and checking that it offers everything kiln relies on. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lib/lib.h"
#include "vmm.h"

const struct kvm_cap_desc kvm_caps[] = {
    {KVM_CAP_USER_MEMORY, "USER_MEMORY", true},
    {KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR", true},
    {KVM_CAP_SET_IDENTITY_MAP_ADDR, "SET_IDENTITY_MAP_ADDR", true},
    {KVM_CAP_IRQCHIP, "IRQCHIP", true},
    {KVM_CAP_PIT2, "PIT2", true},
    {KVM_CAP_EXT_CPUID, "EXT_CPUID", true},
    {KVM_CAP_MP_STATE, "MP_STATE", true},
    {KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT", true},
    {KVM_CAP_IRQFD, "IRQFD", true},
    {KVM_CAP_IOEVENTFD, "IOEVENTFD", true},
    {KVM_CAP_ADJUST_CLOCK, "ADJUST_CLOCK", false},
    {KVM_CAP_XSAVE, "XSAVE", false},
    {KVM_CAP_XCRS, "XCRS", false},
    {KVM_CAP_VCPU_EVENTS, "VCPU_EVENTS", false},
    {KVM_CAP_READONLY_MEM, "READONLY_MEM", false},
};
const unsigned kvm_ncaps = ARRAY_SIZE(kvm_caps);

int kvm_open(const char *path, int *kvm_fd, char *err, size_t errlen)
{
    int fd, version, ret;

    if (!path)
        path = "/dev/kvm";
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        ret = -errno;
        snprintf(err, errlen, "cannot open %s: %s%s", path, strerror(errno),
                 errno == ENOENT   ? " (is the kvm module loaded, and virtualization enabled?)"
                 : errno == EACCES ? " (add yourself to the kvm group, or run as root)"
                                   : "");
        return ret;
    }
    version = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION) {
        snprintf(err, errlen, "%s speaks KVM API version %d; kiln needs %d", path, version,
                 KVM_API_VERSION);
        close(fd);
        return -ENOTSUP;
    }
    for (unsigned i = 0; i < kvm_ncaps; i++) {
        if (kvm_caps[i].required && ioctl(fd, KVM_CHECK_EXTENSION, kvm_caps[i].cap) <= 0) {
            snprintf(err, errlen, "%s lacks the capability KVM_CAP_%s, which kiln needs", path,
                     kvm_caps[i].name);
            close(fd);
            return -ENOTSUP;
        }
    }
    *kvm_fd = fd;
    return 0;
}
