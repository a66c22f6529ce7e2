"""The tf.data pipeline over one TFRecord file of fixed-length features, shared by the fine-tuning tasks.

Training repeats and shuffles with a buffer of 100 like the original; evaluation and prediction keep
the file order. With a `tf.distribute.InputContext` each input pipeline batches per replica and takes
every n-th record. In training the shard is taken *after* the shuffle, which every pipeline does with
the same seed: the replicas' batches then together hold exactly the records one process would put in
its global batch, so several workers follow a single process's loss trajectory step by step (fine-tuning
files are small enough for every worker to read them whole). Integer features arrive as int32 (stored as
int64, like the original).
"""

import tensorflow as tf

# Records shuffled at a time in training, as in the original input functions.
SHUFFLE_BUFFER = 100
# The original's seed for shuffling SQuAD training examples before writing them. Pipelines on several
# workers use it too when no --seed is given: they must shuffle alike, or their shards would overlap.
SHUFFLE_SEED = 12345


def parse_int32(serialized, spec):
  """Parses a batch of serialized Examples; int64 features arrive as int32 (stored as int64, like the
  original), float features stay float32."""
  parsed = tf.io.parse_example(serialized, spec)
  return {key: tf.cast(value, tf.int32) if value.dtype == tf.int64 else value for key, value in parsed.items()}


def pipeline_position(input_context):
  """(number of input pipelines, this pipeline's index) of a `tf.distribute.InputContext` (or None)."""
  if input_context is None:
    return 1, 0
  return input_context.num_input_pipelines, input_context.input_pipeline_id


def tfrecord_dataset_fn(input_file, spec, batch_size, is_training, drop_remainder, seed=None):
  """A `dataset_fn(input_context=None)` for `strategy.distribute_datasets_from_function`; `batch_size` is global."""

  def dataset_fn(input_context=None):
    pipelines, pipeline_id = pipeline_position(input_context)
    dataset = tf.data.TFRecordDataset(input_file)
    if is_training:
      shuffle_seed = SHUFFLE_SEED if seed is None and pipelines > 1 else seed
      dataset = dataset.repeat().shuffle(SHUFFLE_BUFFER, seed=shuffle_seed)
    if pipelines > 1:
      dataset = dataset.shard(pipelines, pipeline_id)
    return batched_and_parsed(dataset, spec, per_replica_batch_size(batch_size, input_context), drop_remainder)

  return dataset_fn


def per_replica_batch_size(global_batch_size, input_context):
  if input_context is None:
    return global_batch_size
  return input_context.get_per_replica_batch_size(global_batch_size)


def batched_and_parsed(dataset, spec, batch_size, drop_remainder):
  """Batches serialized records, parses them in parallel and prefetches."""
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  return dataset.map(lambda serialized: parse_int32(serialized, spec),
                     num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
