"""Token attributions: gradient x input on the word embeddings, for the loss of one window.

score[t] = <d loss / d e_t, e_t> where e_t is the word embedding looked up for token t. Positive
scores push the loss up (away from the reference answer), negative ones pull it towards it.
"""

import numpy as np
import tensorflow as tf


def window_attributions(task, feature_row):
  """(scores float64 [S], loss) for one window (a dict of 1-D arrays incl. labels) of an AnalysisTask."""
  batch = {name: tf.constant(np.asarray(value)[np.newaxis]) for name, value in feature_row.items()}
  table = task.model.word_embeddings
  with tf.GradientTape() as tape:
    outputs = task.model(batch["input_ids"], batch["input_mask"], batch["segment_ids"])
    loss = task.window_losses(outputs.sequence_output, batch)[0]
  gradient = tape.gradient(loss, table)
  seq_length = batch["input_ids"].shape[1]
  # The lookup's gradient holds one row per looked-up position, in position order.
  if not isinstance(gradient, tf.IndexedSlices) or gradient.values.shape[0] != seq_length:
    raise RuntimeError("expected one embedding gradient row per token from the word embedding lookup")
  embeddings = tf.gather(table, batch["input_ids"][0])
  scores = tf.reduce_sum(tf.cast(gradient.values, tf.float32) * embeddings, axis=-1)
  return scores.numpy().astype(np.float64), float(loss.numpy())
