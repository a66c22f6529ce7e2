"""The original release's `optimization` module name, for users' scripts: AdamW and LAMB without bias
correction, the polynomial warmup schedule and `create_optimizer`. The code is `albert.training.optimization`.
"""

from albert.training.optimization import (
                                          EXCLUDE_FROM_WEIGHT_DECAY,
                                          LAMB,
                                          OPTIMIZERS,
                                          AdamWeightDecay,
                                          PolynomialWarmupSchedule,
                                          clip_by_global_norm,
                                          clip_scale,
                                          create_optimizer,
)

__all__ = ["EXCLUDE_FROM_WEIGHT_DECAY", "LAMB", "OPTIMIZERS", "AdamWeightDecay", "PolynomialWarmupSchedule",
           "clip_by_global_norm", "clip_scale", "create_optimizer"]
