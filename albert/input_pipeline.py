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

TRAIN_SHUFFLE_BUFFER = 100
# Without --seed, pipelines on different workers must still shuffle alike, or their shards would overlap.
SHARED_SHUFFLE_SEED = 12345


def tfrecord_dataset_fn(input_file, spec, batch_size, is_training, drop_remainder, seed=None):
  """A `dataset_fn(input_context=None)` for `strategy.distribute_datasets_from_function`; `batch_size` is global."""

  def parse(serialized):
    parsed = tf.io.parse_example(serialized, spec)
    return {key: tf.cast(value, tf.int32) if value.dtype == tf.int64 else value for key, value in parsed.items()}

  def dataset_fn(input_context=None):
    per_replica_batch = batch_size
    dataset = tf.data.TFRecordDataset(input_file)
    pipelines, pipeline_id = 1, 0
    if input_context is not None:
      per_replica_batch = input_context.get_per_replica_batch_size(batch_size)
      pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
    if is_training:
      shuffle_seed = SHARED_SHUFFLE_SEED if seed is None and pipelines > 1 else seed
      dataset = dataset.repeat().shuffle(TRAIN_SHUFFLE_BUFFER, seed=shuffle_seed)
    if pipelines > 1:
      dataset = dataset.shard(pipelines, pipeline_id)
    dataset = dataset.batch(per_replica_batch, drop_remainder=drop_remainder)
    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

  return dataset_fn
