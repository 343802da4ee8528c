/* note.c: the Kiln ABI note (include/kiln/hvc.h) every unikernel carries; kiln checks its version.
 * UK_NOTE_VERSION overrides it only to build the version-mismatch test guest. */
#include "kiln/hvc.h"

#ifndef UK_NOTE_VERSION
#define UK_NOTE_VERSION KILN_HVC_VERSION
#endif

struct kiln_note {
    uint32_t namesz, descsz, type;
    char name[8]; /* "Kiln\0" padded to 4 bytes */
    struct kiln_hvc_note_abi desc;
};

__attribute__((section(".note.kiln"), aligned(4), used)) static const struct kiln_note note = {
    .namesz = sizeof(KILN_HVC_NOTE_NAME),
    .descsz = sizeof(struct kiln_hvc_note_abi),
    .type = KILN_HVC_NOTE_ABI,
    .name = KILN_HVC_NOTE_NAME,
    .desc = {.version = UK_NOTE_VERSION},
};
