"""The original release's `classifier_utils` module name, for users' scripts.

The code lives in `albert.tasks.classification`: `glue` (tasks and TSV reading), `features` (ids,
records, caches, input pipeline), `task` (the classifier model), `metrics`, `serving` and `runner`.
"""

from albert.tasks.classification.features import (
                                                   InputFeatures,
                                                   convert_example,
                                                   input_fn_builder,
                                                   pack_ids,
                                                   padding_trim_settings,
                                                   prepare_feature_file,
                                                   serialize_features,
                                                   text_normalizer,
                                                   truncate_pair,
)
from albert.tasks.classification.glue import (
                                                   DEV,
                                                   TASKS,
                                                   TEST,
                                                   TRAIN,
                                                   GlueTask,
                                                   InputExample,
                                                   get_task,
                                                   read_examples,
)
from albert.tasks.classification.metrics import (
                                                   accuracy,
                                                   classifier_scores,
                                                   f1_score,
                                                   matthews_corrcoef,
                                                   pearson,
                                                   spearman,
)
from albert.tasks.classification.serving import export_saved_model
from albert.tasks.classification.task import (
                                                   ClassifierTask,
                                                   prediction_outputs,
                                                   stack_predictions,
)
from albert.training.task import trim_padding

__all__ = ["ClassifierTask", "DEV", "GlueTask", "InputExample", "InputFeatures", "TASKS", "TEST", "TRAIN", "accuracy",
           "classifier_scores", "convert_example", "export_saved_model", "f1_score", "get_task", "input_fn_builder",
           "matthews_corrcoef", "pack_ids", "padding_trim_settings", "pearson", "prediction_outputs",
           "prepare_feature_file", "read_examples", "serialize_features", "spearman", "stack_predictions",
           "text_normalizer", "trim_padding", "truncate_pair"]
