/* tools.h: the kiln CLI's commands, one file each. */
#ifndef KILN_TOOLS_H
#define KILN_TOOLS_H

/* `kiln doctor [--quiet] [--json]`: exit 0 if Linux guests can run, 2 if /dev/kvm exists but
 * cannot run them (e.g. PVM), 1 if there is no usable /dev/kvm. */
int cmd_doctor(int argc, char **argv);
/* Before booting a Linux guest: warns once on stderr if the probe says this host's KVM cannot
 * run one, naming the test bed as the way out. Quiet when KILN_NO_PROBE=1. */
void doctor_warn_if_unfit(const char *kvm_path);

#endif
