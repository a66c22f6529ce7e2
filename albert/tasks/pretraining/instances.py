"""Pretraining instances: SOP (or NSP) sentence pairs from tokenized documents, masked, as features.

Segment construction, the SOP/NSP labels (including the random-document B with label 1 for
single-sentence chunks, quirk 4), pair truncation and the instance features follow the original
(docs/compatibility.md §7.2-7.6).
"""

import random
from typing import NamedTuple

from albert.tasks.pretraining.masking import CLS, SEP


class TrainingInstance(NamedTuple):
  tokens: list
  segment_ids: list
  token_boundary: list
  masked_lm_positions: list
  masked_lm_labels: list
  is_random_next: bool


def truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng):
  """Trims the longer segment (B on ties) one token at a time, from the front or back at random."""
  while len(tokens_a) + len(tokens_b) > max_num_tokens:
    longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
    if rng.random() < 0.5:
      del longer[0]
    else:
      longer.pop()


class InstanceBuilder:
  """SOP (or NSP) sentence pairs from tokenized documents, masked by a `Masker`."""

  def __init__(self, masker, max_seq_length, short_seq_prob, random_next_sentence=False):
    self.masker = masker
    self.max_num_tokens = max_seq_length - 3
    self.short_seq_prob = short_seq_prob
    self.random_next_sentence = random_next_sentence

  def from_document(self, documents, document_index, rng, ngram_rng):
    """Instances from `documents[document_index]`; other documents supply random B segments."""
    document = documents[document_index]
    target_length = self.max_num_tokens
    if rng.random() < self.short_seq_prob:
      target_length = rng.randint(2, self.max_num_tokens)
    instances, chunk, chunk_length, i = [], [], 0, 0
    while i < len(document):
      chunk.append(document[i])
      chunk_length += len(document[i])
      if i == len(document) - 1 or chunk_length >= target_length:
        a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
        tokens_a = _concat(chunk[:a_end])
        if len(chunk) == 1 or (self.random_next_sentence and rng.random() < 0.5):
          is_random_next = True
          tokens_b = self._random_segment(documents, document_index, target_length - len(tokens_a), rng)
          i -= len(chunk) - a_end
        elif not self.random_next_sentence and rng.random() < 0.5:
          is_random_next = True
          tokens_a, tokens_b = _concat(chunk[a_end:]), tokens_a
        else:
          is_random_next = False
          tokens_b = _concat(chunk[a_end:])
        truncate_seq_pair(tokens_a, tokens_b, self.max_num_tokens, rng)
        instances.append(self._instance(tokens_a, tokens_b, is_random_next, rng, ngram_rng))
        chunk, chunk_length = [], 0
      i += 1
    return instances

  @staticmethod
  def _random_segment(documents, document_index, target_length, rng):
    """Sentences from a random other document (10 tries to avoid this one), from a random start."""
    for _ in range(10):
      other_index = rng.randint(0, len(documents) - 1)
      if other_index != document_index:
        break
    other = documents[other_index]
    segment = []
    for sentence in other[rng.randint(0, len(other) - 1):]:
      segment.extend(sentence)
      if len(segment) >= target_length:
        break
    return segment

  def _instance(self, tokens_a, tokens_b, is_random_next, rng, ngram_rng):
    tokens = [CLS, *tokens_a, SEP, *tokens_b, SEP]
    segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
    masked = self.masker.mask(tokens, rng, ngram_rng)
    return TrainingInstance(masked.tokens, segment_ids, masked.token_boundary, masked.positions,
                            masked.labels, is_random_next)


def _concat(sentences):
  return [token for sentence in sentences for token in sentence]


def create_training_instances(documents, builder, dupe_factor, rng, ngram_rng):
  """Shuffles the documents, makes `dupe_factor` passes over them, and shuffles the instances."""
  documents = [document for document in documents if document]
  rng.shuffle(documents)
  instances = []
  for _ in range(dupe_factor):
    for document_index in range(len(documents)):
      instances.extend(builder.from_document(documents, document_index, rng, ngram_rng))
  rng.shuffle(instances)
  return instances


def chunk_rngs(random_seed, chunk_index):
  """The main and n-gram RNGs of a chunk; chunk 0's main RNG is the original's `Random(random_seed)`."""
  main_seed = random_seed if chunk_index == 0 else f"albert-chunk:{random_seed}:{chunk_index}"
  return random.Random(main_seed), random.Random(f"albert-ngram:{random_seed}:{chunk_index}")


def instance_features(instance, tokenizer, max_seq_length, num_prediction_slots):
  """The original TFRecord features of an instance (docs/compatibility.md §5.1, §7.6), zero-padded."""
  def padded(values, length, pad=0):
    return list(values) + [pad] * (length - len(values))

  num_tokens = len(instance.tokens)
  num_predictions = len(instance.masked_lm_positions)
  return {
      "input_ids": padded(tokenizer.convert_tokens_to_ids(instance.tokens), max_seq_length),
      "input_mask": padded([1] * num_tokens, max_seq_length),
      "segment_ids": padded(instance.segment_ids, max_seq_length),
      "token_boundary": padded(instance.token_boundary, max_seq_length),
      "masked_lm_positions": padded(instance.masked_lm_positions, num_prediction_slots),
      "masked_lm_ids": padded(tokenizer.convert_tokens_to_ids(instance.masked_lm_labels), num_prediction_slots),
      "masked_lm_weights": padded([1.0] * num_predictions, num_prediction_slots, 0.0),
      "next_sentence_labels": [int(instance.is_random_next)],
  }


def describe_instance(instance):
  """A readable summary of an instance for the log, like the original's first-20 dump."""
  return (f"tokens: {' '.join(instance.tokens)}\n"
          f"segment_ids: {' '.join(map(str, instance.segment_ids))}\n"
          f"token_boundary: {' '.join(map(str, instance.token_boundary))}\n"
          f"is_random_next: {instance.is_random_next}\n"
          f"masked_lm_positions: {' '.join(map(str, instance.masked_lm_positions))}\n"
          f"masked_lm_labels: {' '.join(instance.masked_lm_labels)}")
