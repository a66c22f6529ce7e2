"""SQuAD as two task objects, one per version: the head, the loss, the outputs, and the answer rules.

`SquadV1Task` is the original v1 model (one [2, H] projection, no p_mask); `SquadV2Task` the XLNet-style
v2 model (start, end given the start, answer class; p_mask; a beam at prediction). Everything that
depends on the version lives on these objects: training loss, prediction and serving outputs, the
per-window loss that analysis reports, post-processing with its scoring, and the flags of its own
script. Runners, serving and analysis never test a version number.
"""

import dataclasses

import tensorflow as tf
from absl import flags

from albert.core import bounds
from albert.model import heads
from albert.tasks.squad import evaluate, postprocess
from albert.training.task import EncoderTask

TRAIN_LABELS = ("start_positions", "end_positions", "is_impossible")


@dataclasses.dataclass(frozen=True)
class AnswerRules:
  """The post-processing flags: n-best size, answer length and (v2) the null threshold and its rule."""
  n_best_size: int = 20
  max_answer_length: int = 30
  null_score_diff_threshold: float | None = None
  threshold_rule: str = "original"


def answer_mask(input_mask, segment_ids):
  """The v2 `p_mask` rebuilt from the serving inputs: 0 on [CLS] and the document window (segment 1 up
  to, not including, the final [SEP]), 1 elsewhere."""
  positions = tf.range(tf.shape(input_mask)[1])[tf.newaxis, :]
  final_sep = tf.reduce_sum(input_mask, axis=1, keepdims=True) - 1
  answerable = (positions == 0) | ((segment_ids == 1) & (positions < final_sep))
  return 1 - tf.cast(answerable, tf.int32)


def define_beam_flags(define):
  """The v2 head's beam sizes (`define` is a `albert.cli.definer.definer`)."""
  define(flags.DEFINE_integer, "start_n_top", 5, "Beam size for the start position.", bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_integer, "end_n_top", 5, "Beam size for the end position.", bound=bounds.AT_LEAST_ONE)


class SquadTask(EncoderTask):
  """What both versions share: the encoder's sequence output, prediction with `unique_ids`."""

  version = None
  serving_outputs = None   # what the exported signature returns, for the --export_dir help
  head_variable = None     # a variable only this version's head has (tells a checkpoint's version)
  uses_p_mask = False
  exports_tflite = False
  with_null_odds = False
  min_sequence_length = 1  # the fewest positions the head's outputs need (length buckets are never shorter)

  def sequence_output(self, features, training):
    return self.encode(features["input_ids"], features["input_mask"], features["segment_ids"],
                       training).sequence_output

  def compute_loss(self, features, training):
    return tf.reduce_mean(self.window_losses(self.sequence_output(features, training), features, training))

  def predict_step(self, features):
    return {"unique_ids": features["unique_ids"], **self.answer_outputs(features)}

  def answer_outputs(self, features):
    """The head's outputs for post-processing and serving."""
    return self.head_outputs(self.sequence_output(features, training=False), features)

  def serving_features(self, input_ids, input_mask, segment_ids):
    """The features the model needs, from the int32 inputs a SavedModel takes."""
    return {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids}

  def span_candidates(self, outputs, n_best_size):
    """In-graph counterpart of the version's `postprocess.candidates_v*`: (start, end, start score, end
    score), each [windows, candidates] in the same order, before the span filters."""
    raise NotImplementedError

  def null_scores(self, outputs):
    """Per window [W], the score of answering nothing (v2's cls_logits), or None without one."""
    return None


class SquadV1Task(SquadTask):
  """ALBERT + the v1 span head: start/end logits, loss (start CE + end CE) / 2 (docs/compatibility.md §3.3)."""

  version = 1
  head_variable = "cls/squad/output_weights"
  exports_tflite = True  # the original's v1 export wrote albert_model.tflite
  serving_outputs = "start_logits and end_logits"

  def __init__(self, config, create_encoder=None, compute_dtype=tf.float32):
    super().__init__(config, create_encoder, compute_dtype)

  @staticmethod
  def define_flags(define):
    """The flags only run_squad_v1 has."""
    define(flags.DEFINE_bool, "use_einsum", True, "Use tf.einsum (the maths is identical; kept for compatibility).")

  @classmethod
  def from_flags(cls, fv, config, create_encoder, compute_dtype):
    return cls(config, create_encoder, compute_dtype)

  def build_head(self):
    return heads.SquadV1Head(self.config)

  def head_outputs(self, sequence_output, features):
    start_logits, end_logits = self.head(sequence_output)
    return {"start_logits": start_logits, "end_logits": end_logits}

  def window_losses(self, sequence_output, features, training=False):
    start_logits, end_logits = self.head(sequence_output)
    return heads.squad_v1_window_losses(start_logits, end_logits, features["start_positions"],
                                        features["end_positions"])

  fallback_answer = postprocess.FALLBACK_V1

  def span_candidates(self, outputs, n_best_size):
    """Top n_best_size starts x top n_best_size ends (ties: earlier position first, like the command line)."""
    k = tf.minimum(n_best_size, tf.shape(outputs["start_logits"])[1])
    start_scores, starts = tf.math.top_k(outputs["start_logits"], k=k)
    end_scores, ends = tf.math.top_k(outputs["end_logits"], k=k)
    return (tf.repeat(starts, k, axis=1), tf.tile(ends, [1, k]), tf.repeat(start_scores, k, axis=1),
            tf.tile(end_scores, [1, k]))

  def predictions(self, examples, metas, results, rules):
    """The ExamplePrediction of every example, in order."""
    return postprocess.predict_v1(examples, metas, results, rules.n_best_size, rules.max_answer_length)

  def write_and_score(self, output_dir, examples, metas, results, rules, dataset=None):
    """Writes predictions.json and nbest_predictions.json; returns EM/F1 when `dataset` has answers."""
    written = postprocess.write_prediction_files(output_dir, self.predictions(examples, metas, results, rules),
                                                 with_null_odds=False)
    return None if dataset is None else evaluate.evaluate_v1(dataset, written.answers())


class SquadV2Task(SquadTask):
  """ALBERT + the XLNet-style v2 head: start, end given the start, answer class (docs/compatibility.md §3.4)."""

  version = 2
  head_variable = "start_logits/dense/kernel"
  uses_p_mask = True
  with_null_odds = True
  serving_outputs = "the beam outputs and cls_logits (new in v2)"

  def __init__(self, config, create_encoder=None, compute_dtype=tf.float32, start_n_top=5, end_n_top=5,
               dropout_prob=0.1):
    super().__init__(config, create_encoder, compute_dtype)
    self.start_n_top, self.end_n_top, self.dropout_prob = start_n_top, end_n_top, dropout_prob
    # The beam's top-k needs that many positions to choose from.
    self.min_sequence_length = max(start_n_top, end_n_top)

  @staticmethod
  def define_flags(define):
    """The flags only run_squad_v2 has: the head's beam and dropout, the null-answer threshold."""
    define_beam_flags(define)
    define(flags.DEFINE_float, "dropout_prob", 0.1, "Dropout probability of the answer-class layer.",
           bound=bounds.DROPOUT)
    define(flags.DEFINE_enum, "threshold_rule", "original", list(postprocess.THRESHOLD_RULES),
           "Which scores fill exact/f1 when evaluating: 'original' applies the released scripts' 1.0 na_prob "
           "threshold to null_odds.json (comparable with published numbers); 'tuned' scores predictions.json "
           "alone. Both pairs are always written (new).")
    define(flags.DEFINE_float, "null_score_diff_threshold", None,
           "Answer '' when a question's null score diff is >= this; used when the predict file has no answers "
           "to tune it on (new; default: always answer a span).")

  @classmethod
  def from_flags(cls, fv, config, create_encoder, compute_dtype):
    return cls(config, create_encoder, compute_dtype, fv.start_n_top, fv.end_n_top, fv.dropout_prob)

  def build_head(self):
    return heads.SquadV2Head(self.config, self.start_n_top, self.end_n_top, self.dropout_prob)

  def head_outputs(self, sequence_output, features):
    return self.head.predict(sequence_output, features["p_mask"])

  def window_losses(self, sequence_output, features, training=False):
    start_log_probs, end_log_probs, cls_logits = self.head.train_logits(
        sequence_output, features["p_mask"], features["start_positions"], training)
    return heads.squad_v2_window_losses(start_log_probs, end_log_probs, cls_logits, features["start_positions"],
                                        features["end_positions"], features["is_impossible"])

  def serving_features(self, input_ids, input_mask, segment_ids):
    features = super().serving_features(input_ids, input_mask, segment_ids)
    features["p_mask"] = answer_mask(input_mask, segment_ids)
    return features

  fallback_answer = postprocess.FALLBACK_V2

  def span_candidates(self, outputs, n_best_size):
    """The beam: start i pairs with ends i * end_n_top .. (i + 1) * end_n_top - 1."""
    del n_best_size  # the beam sizes decide, as in the command line's post-processing
    return (tf.repeat(outputs["start_top_index"], self.end_n_top, axis=1), outputs["end_top_index"],
            tf.repeat(outputs["start_top_log_probs"], self.end_n_top, axis=1), outputs["end_top_log_probs"])

  def null_scores(self, outputs):
    return outputs["cls_logits"]

  def predictions(self, examples, metas, results, rules):
    return postprocess.predict_v2(examples, metas, results, rules.n_best_size, rules.max_answer_length,
                                  self.start_n_top, self.end_n_top)

  def write_and_score(self, output_dir, examples, metas, results, rules, dataset=None):
    """Writes the three prediction files. With answers in `dataset`, tunes the null threshold on them
    and returns the scores; without, answers "" at `rules.null_score_diff_threshold` (None: never)."""
    threshold = None if dataset is not None else rules.null_score_diff_threshold
    written = postprocess.write_prediction_files(output_dir, self.predictions(examples, metas, results, rules),
                                                 with_null_odds=True, threshold=threshold)
    if dataset is None:
      return None
    return postprocess.tune_threshold_v2(output_dir, written, dataset, rules.threshold_rule)


SQUAD_TASKS = {1: SquadV1Task, 2: SquadV2Task}
