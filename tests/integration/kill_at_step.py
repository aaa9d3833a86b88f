"""A callback that kills its own process with SIGKILL, for the resume tests.

Added on the command line (``--trainer.callbacks+=kill_at_step.KillAtStep --trainer.callbacks.step=N``) with
``tests/integration`` on PYTHONPATH. It fires at the start of the batch after step ``N``, once the checkpoint of
step ``N`` is written, so the kill lands on the same step however busy the machine is (a kill sent from outside
raced the training loop).
"""

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
