"""The original release's `modeling` module name, for users' scripts: the config, the encoder, the
pretraining heads and the building blocks.

The code lives in `albert.model`: `config`, `encoder` (AlbertModel), `pretraining` (MLM and SOP heads),
`layers`, `variables` (the original names and shapes), `heads` (task heads) and `hub` (TF-Hub modules).
"""

from albert.model.config import AlbertConfig
from albert.model.encoder import ATTENTION_MASK_BIAS, AlbertModel, AlbertOutputs
from albert.model.layers import (
                                 LAYER_NORM_EPSILON,
                                 create_variable,
                                 dense,
                                 dropout,
                                 gelu,
                                 get_activation,
                                 layer_norm,
                                 ones_variable,
)
from albert.model.pretraining import (
                                 AlbertPretrainingModel,
                                 MaskedLMHead,
                                 PretrainingOutputs,
                                 SentenceOrderHead,
                                 masked_lm_loss,
                                 sentence_order_loss,
)

__all__ = ["ATTENTION_MASK_BIAS", "AlbertConfig", "AlbertModel", "AlbertOutputs", "AlbertPretrainingModel",
           "LAYER_NORM_EPSILON", "MaskedLMHead", "PretrainingOutputs", "SentenceOrderHead", "create_variable", "dense",
           "dropout", "gelu", "get_activation", "layer_norm", "masked_lm_loss", "ones_variable",
           "sentence_order_loss"]
