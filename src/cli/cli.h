/* cli.h: parsing of the kiln command line into configurations (pure, so it is unit-tested). */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "machine/machine.h"

#define CLI_DEFAULT_MEM   (256ULL << 20)
#define CLI_DEFAULT_CPUS  1
#define CLI_MAX_TIMEOUT_S (7 * 24 * 3600)
/* The kernel command line of the default image: serial console, reset through the i8042 so a
 * reboot ends the VM, reboot at once on panic, no port-0x80 delays (each would be a VM exit). */
#define CLI_DEFAULT_CMDLINE "console=ttyS0 reboot=k panic=-1 io_delay=none quiet"

#define CLI_MAX_STRINGS (MACHINE_MAX_DISKS + 1) /* --disk and --net values, split in place */
#define CLI_IFNAMSIZ    16                      /* IFNAMSIZ: tap names are shorter */

struct cli_run {
    struct machine_config cfg; /* its strings point into argv or strings[] below */
    const char *append;        /* --append: added to the command line */
    int verbosity;             /* -v adds one, -q subtracts one */
    bool help;
    bool detach; /* --detach: run in the background, return once the guest agent is READY */
    bool no_vsock, no_rng; /* the default image gets vsock and rng unless these say no */
    unsigned nstrings;
    char strings[CLI_MAX_STRINGS][4096];
};

/* Parses the arguments of `kiln run` (argv[0] is the first option, not "run"). Fills out with
 * defaults for anything not given (kernel/initrd stay NULL: the caller picks the default image).
 * Returns 0 or -EINVAL with a message naming the bad option or value in err. */
int cli_parse_run(int argc, char *const argv[], struct cli_run *out, char *err, size_t errlen);

#endif
