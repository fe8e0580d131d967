"""Leaving a multi-process run (torchrun, `accelerate launch`) without a rank aborting at exit.

train(cfg)
end_distributed_run()  # under torchrun: does not return; otherwise a no-op
"""

from __future__ import annotations

import atexit
import os
import sys


def end_distributed_run(exit_code: int = 0) -> None:
    """Wait for every rank, destroy the process group and exit the process with `exit_code`.

    Returns at once when no process group is initialized (a single-process run).

    Why the process ends here rather than by returning: after the last collective, gloo's worker
    thread can still hold that collective's work object, whose destructor needs the GIL. If the
    interpreter is already finalizing, that thread is unwound inside a noexcept destructor and the
    rank dies with SIGABRT ("terminate called without an active exception") after all its work is
    saved: 13 of 60 two-process CPU runs on torch 2.13 did, with `destroy_process_group` called.
    So the atexit handlers run and the standard streams are flushed here, and `os._exit` skips the
    interpreter finalization that races with that thread.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
