/* observers.c: exit observers: components (console log, runtime directory, control socket,
 * vsock) register a callback that runs once when the VM stops. */
#include <errno.h>
#include <stdatomic.h>

#include "vmm.h"

int vm_on_exit(struct vm *vm, vm_observer_fn fn, void *opaque)
{
    if (vm->nobservers >= VM_MAX_OBSERVERS)
        return -ENOSPC;
    vm->observers[vm->nobservers].fn = fn;
    vm->observers[vm->nobservers].opaque = opaque;
    vm->nobservers++;
    return 0;
}

void vm_run_exit_observers(struct vm *vm)
{
    enum vm_exit_reason reason;

    if (!vm || atomic_exchange(&vm->observers_run, true))
        return;
    reason = (enum vm_exit_reason)vm->exit_reason;
    /* Reverse order: a component registered later may depend on one registered earlier. */
    for (unsigned i = vm->nobservers; i-- > 0;)
        vm->observers[i].fn(vm->observers[i].opaque, reason);
}
