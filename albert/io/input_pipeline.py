"""The tf.data pipeline over one TFRecord file of fixed-length features, shared by the fine-tuning tasks.

Training repeats and shuffles with a buffer of 100 like the original; evaluation and prediction keep
the file order. With a `tf.distribute.InputContext` each input pipeline batches per replica and takes
every n-th record. In training the shard is taken *after* the shuffle, which every pipeline does with
the same seed: the replicas' batches then together hold exactly the records one process would put in
its global batch, so several workers follow a single process's loss trajectory step by step (fine-tuning
files are small enough for every worker to read them whole). Integer features arrive as int32 (stored as
int64, like the original).

Length bucketing (`Bucketing`) cuts batches to a few fixed sequence lengths, multiples of `BUCKET_STEP`
up to the records' length, so a batch of short sequences does not pay for max_seq_length and a
tf.function (or XLA) sees only a handful of shapes. Padding always sits at the end of a sequence, and
attention never looks at it, so a cut batch gives the padded batch's outputs at every kept position.

- Prediction (`bucketed_dataset_fn`): records are grouped by the bucket of their real length, batched
  within a bucket and cut to it. A bucket's last batch is filled up to the batch size with copies of
  its last record whose `filler` keys say they are not real (the caller drops their outputs); records
  come out of order, so outputs must be matched to records by an id.
- Training with `--group_by_length` (`tfrecord_dataset_fn(..., bucketing=...)`): a "mega-batch"
  scheme. The shuffled stream is cut into chunks of `MEGA_BATCH_BATCHES` batches, each chunk is sorted
  by real length (longest first, stable) and split into batches of similar lengths, whole batches are
  shuffled (a buffer of one chunk's batches), and each is cut to the bucket of its longest sequence.
  Every batch still has the batch size and the stream repeats, so step counts, the schedule, gradient
  accumulation (each micro-batch is grouped and cut on its own) and resuming (which restarts the input,
  as before) are unchanged; with a seed the batches and their order repeat exactly.
"""

import dataclasses

import tensorflow as tf

# Records shuffled at a time in training, as in the original input functions.
SHUFFLE_BUFFER = 100
# The original's seed for shuffling SQuAD training examples before writing them. Pipelines on several
# workers use it too when no --seed is given: they must shuffle alike, or their shards would overlap.
SHUFFLE_SEED = 12345
# Bucket lengths are multiples of this (and max_seq_length itself).
BUCKET_STEP = 64
# Batches per length-sorted chunk of --group_by_length (the transformers Trainer's mega-batch factor).
MEGA_BATCH_BATCHES = 50
# The feature whose 1s count a record's real length.
MASK_KEY = "input_mask"


def real_lengths(input_mask):
  """The real (unpadded) length of each sequence of a [..., S] mask, as int32 [...]."""
  return tf.reduce_sum(tf.cast(input_mask, tf.int32), axis=-1)


def longest_real_length(input_mask):
  """The longest real sequence of an [N, S] mask (at least 1)."""
  return tf.maximum(tf.reduce_max(real_lengths(input_mask)), 1)


def cut_to_length(features, keys, length):
  """`features` with each [N, S] tensor named in `keys` cut to [N, length] (padding sits at the end)."""
  return {key: value[:, :length] if key in keys else value for key, value in features.items()}


def sequence_keys(spec, seq_length):
  """The keys of a parsing spec whose features are sequences of `seq_length` (those a cut shortens)."""
  return frozenset(key for key, feature in spec.items() if list(feature.shape) == [seq_length])


@dataclasses.dataclass(frozen=True)
class Bucketing:
  """The sequence lengths batches are cut to: multiples of `step` of at least `minimum` (a head may
  need that many positions, e.g. a top-k beam), and `max_seq_length` itself. `trim` False groups by
  length but keeps the full static length (TPUs, whose programs take one shape)."""
  max_seq_length: int
  minimum: int = 1
  step: int = BUCKET_STEP
  trim: bool = True

  def lengths(self):
    """Every bucket length, ascending."""
    return [n for n in range(self.step, self.max_seq_length, self.step) if n >= self.minimum] + [self.max_seq_length]

  def length_of(self, real_length):
    """The smallest bucket length holding `real_length` (an int or an integer tensor, elementwise)."""
    needed = tf.maximum(tf.cast(real_length, tf.int32), max(self.minimum, 1))
    return tf.minimum(-(-needed // self.step) * self.step, self.max_seq_length)

  def cut(self, features, keys):
    """A batch cut to the bucket of its longest real sequence (unchanged when `trim` is False)."""
    if not self.trim:
      return features
    return cut_to_length(features, keys, self.length_of(longest_real_length(features[MASK_KEY])))


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


def tfrecord_dataset_fn(input_file, spec, batch_size, is_training, drop_remainder, seed=None, bucketing=None):
  """A `dataset_fn(input_context=None)` for `strategy.distribute_datasets_from_function`; `batch_size` is global.

  With a `Bucketing`, training batches are grouped by length (the module doc's mega-batch scheme); the
  records' length is `bucketing.max_seq_length`.
  """
  if bucketing is not None and not is_training:
    raise ValueError("length grouping of a tfrecord_dataset_fn is for training; prediction uses bucketed_dataset_fn")

  def dataset_fn(input_context=None):
    pipelines, pipeline_id = pipeline_position(input_context)
    dataset = tf.data.TFRecordDataset(input_file)
    if is_training:
      shuffle_seed = SHUFFLE_SEED if seed is None and pipelines > 1 else seed
      dataset = dataset.repeat().shuffle(SHUFFLE_BUFFER, seed=shuffle_seed)
    if pipelines > 1:
      dataset = dataset.shard(pipelines, pipeline_id)
    batch = per_replica_batch_size(batch_size, input_context)
    if bucketing is not None:
      return length_grouped_batches(dataset, spec, batch, bucketing, shuffle_seed)
    return batched_and_parsed(dataset, spec, batch, drop_remainder)

  return dataset_fn


def length_grouped_batches(dataset, spec, batch_size, bucketing, seed=None):
  """Full batches of similar lengths from an endless stream of serialized records (`--group_by_length`,
  the module doc's mega-batch scheme), each cut to the bucket of its longest sequence."""
  keys = sequence_keys(spec, bucketing.max_seq_length)

  def sorted_batches(chunk):
    order = tf.argsort(real_lengths(chunk[MASK_KEY]), direction="DESCENDING", stable=True)
    return {key: tf.reshape(tf.gather(value, order), [MEGA_BATCH_BATCHES, batch_size, *value.shape[1:]])
            for key, value in chunk.items()}

  dataset = dataset.batch(batch_size * MEGA_BATCH_BATCHES, drop_remainder=True)
  dataset = dataset.map(lambda serialized: sorted_batches(parse_int32(serialized, spec)),
                        num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.unbatch().shuffle(MEGA_BATCH_BATCHES, seed=seed)
  return dataset.map(lambda batch: bucketing.cut(batch, keys), num_parallel_calls=tf.data.AUTOTUNE).prefetch(
      tf.data.AUTOTUNE)


def bucketed_dataset_fn(input_file, spec, batch_size, bucketing, filler):
  """A prediction `dataset_fn(input_context=None)` whose batches each hold records of one bucket, cut to
  it (module doc). Every batch has the per-replica batch size: a bucket's last batch is filled with
  copies of its last record in which each key of `filler` takes that value, so the caller can drop
  their outputs. Batches come in the order their buckets fill up, not in file order.
  """
  keys = sequence_keys(spec, bucketing.max_seq_length)

  def dataset_fn(input_context=None):
    pipelines, pipeline_id = pipeline_position(input_context)
    batch = per_replica_batch_size(batch_size, input_context)
    dataset = tf.data.TFRecordDataset(input_file)
    if pipelines > 1:
      dataset = dataset.shard(pipelines, pipeline_id)
    dataset = batched_and_parsed(dataset, spec, batch, drop_remainder=False).unbatch()
    dataset = dataset.group_by_window(
        key_func=lambda record: tf.cast(bucketing.length_of(real_lengths(record[MASK_KEY])), tf.int64),
        reduce_func=lambda key, records: records.batch(batch), window_size=batch)
    return dataset.map(lambda rows: bucketing.cut(filled(rows, batch, filler), keys),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

  return dataset_fn


def filled(batch, size, filler):
  """`batch` completed to `size` rows with copies of its last row, in which each key of `filler` holds
  that value instead."""
  missing = size - tf.shape(tf.nest.flatten(batch)[0])[0]

  def fill(key, value):
    if key in filler:
      extra = tf.fill(tf.concat([[missing], tf.shape(value)[1:]], 0), tf.cast(filler[key], value.dtype))
    else:
      extra = tf.repeat(value[-1:], missing, axis=0)
    return tf.concat([value, extra], axis=0)

  return {key: fill(key, value) for key, value in batch.items()}


def per_replica_batch_size(global_batch_size, input_context):
  if input_context is None:
    return global_batch_size
  return input_context.get_per_replica_batch_size(global_batch_size)


def batched_and_parsed(dataset, spec, batch_size, drop_remainder):
  """Batches serialized records, parses them in parallel and prefetches."""
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  return dataset.map(lambda serialized: parse_int32(serialized, spec),
                     num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
