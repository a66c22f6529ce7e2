"""The original release's `squad_utils` module name, for users' scripts.

The SQuAD code lives in `albert.tasks.squad`: `examples` (reading JSON), `windows` (features),
`records` (TFRecords and caches), `task` (the v1 and v2 models), `postprocess` (n-best and answer
files) and `evaluate` (the official scores).
"""

from albert.tasks.squad.evaluate import evaluate_v1, evaluate_v2
from albert.tasks.squad.examples import SquadExample, read_squad_examples
from albert.tasks.squad.postprocess import write_predictions_v1, write_predictions_v2
from albert.tasks.squad.records import (
                                        FeatureWriter,
                                        PredictFeatures,
                                        encode_example,
                                        encode_feature_body,
                                        feature_spec,
                                        input_fn_builder,
                                        prepare_predict_features,
                                        prepare_train_features,
                                        read_feature_metas,
                                        train_feature_path,
                                        write_feature_metas,
                                        write_features,
)
from albert.tasks.squad.windows import (
                                        ConversionStats,
                                        FeatureMeta,
                                        SquadFeature,
                                        answer_recovery,
                                        answer_token_span,
                                        check_window_flags,
                                        convert_examples_to_features,
                                        doc_spans,
                                        max_context_flags,
)

__all__ = ["ConversionStats", "FeatureMeta", "FeatureWriter", "PredictFeatures", "SquadExample", "SquadFeature",
           "answer_recovery", "answer_token_span", "check_window_flags", "convert_examples_to_features",
           "doc_spans", "encode_example", "encode_feature_body", "evaluate_v1", "evaluate_v2", "feature_spec",
           "input_fn_builder", "max_context_flags", "prepare_predict_features", "prepare_train_features",
           "read_feature_metas", "read_squad_examples", "train_feature_path", "write_feature_metas",
           "write_features", "write_predictions_v1", "write_predictions_v2"]
