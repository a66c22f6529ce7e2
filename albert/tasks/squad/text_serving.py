"""Answers from raw strings inside the SavedModel: tokenizer, windows, model and n-best, all in-graph.

The `serve_text` signature of a SQuAD export takes `question` and `context` strings [B] and returns, per
question, the best answer (`answer`, its character offsets `start`/`end` in the context, `probability`
among the n-best), and for SQuAD 2.0 models `null_score_diff` (answer "" when it reaches your threshold).
Every step mirrors the command line's, so a loaded SavedModel answers exactly like `python -m albert.answer`:
- pieces and their raw character spans from `albert.text.in_graph` (identical to `FullTokenizer`);
- windows as `albert.tasks.squad.windows` builds them ([CLS] question [SEP] document [SEP], stride
  windows, each token's max-context window), padded to the export's `max_seq_length`;
- the task's own head outputs, the version's candidate spans (v1: top start x top end logits; v2: the
  beam), the original's filters, then the n-best distinct by text with softmax probabilities
  (`albert.tasks.squad.postprocess`).
Questions longer than `max_query_length` pieces are cut, as the runners' conversion does.
"""

import tensorflow as tf

from albert.tasks.squad.postprocess import NO_FEATURE_SCORE_NULL

# Python's str.isspace() characters (what str.strip() removes), as an RE2 class.
_WHITESPACE = (r"[\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}"
               r"\x{205f}\x{3000}]")


class SquadTextAnswers(tf.Module):
  """The in-graph path from strings to answers for one SQuAD task (any version).

  Args:
    task: the SquadTask (built, weights loaded); its head outputs and candidate rules are used.
    tokenizer: an `albert.text.in_graph.InGraphTokenizer` of the model's SentencePiece model.
    max_seq_length, doc_stride, max_query_length: the window settings of the run.
    rules: the run's AnswerRules (n-best size, max answer length).
  """

  def __init__(self, task, tokenizer, max_seq_length, doc_stride, max_query_length, rules):
    super().__init__(name="squad_text_answers")
    self.tokenizer, self._task = tokenizer, task
    self.max_seq_length, self.doc_stride, self.max_query_length = max_seq_length, doc_stride, max_query_length
    self.n_best_size, self.max_answer_length = rules.n_best_size, rules.max_answer_length
    # Windows of one document that can share a token: the widest document room over the stride.
    self._neighbours = -(-(max_seq_length - 3) // doc_stride)

  def __call__(self, question, context):
    query = self.tokenizer.tokenize(question)[:, :self.max_query_length]
    doc_ids, doc_starts, doc_ends = self.tokenizer.tokenize_with_offsets(context)
    windows = self._windows(query, doc_ids)
    features = self._task.serving_features(windows["input_ids"], windows["input_mask"], windows["segment_ids"])
    outputs = self._task.answer_outputs(features)
    starts, ends, start_scores, end_scores = self._task.span_candidates(outputs, self.n_best_size)
    return self._best_answers(context, windows, doc_starts, doc_ends, starts, ends, start_scores, end_scores,
                              self._task.null_scores(outputs))

  # ---- windows ----

  def _windows(self, query, doc_ids):
    """All windows of the batch, flattened: model inputs at max_seq_length, plus each window's example,
    document start and length, document offset and max-context flags."""
    query_length = tf.cast(query.row_lengths(), tf.int32)
    doc_length = tf.cast(doc_ids.row_lengths(), tf.int32)
    room = self.max_seq_length - query_length - 3
    extra = tf.maximum(0, -(-(doc_length - room) // self.doc_stride))
    count = tf.where(doc_length > 0, extra + 1, 0)  # no pieces, no window (like the command line)
    example = tf.repeat(tf.range(tf.size(count)), count)
    index_in_example = tf.range(tf.reduce_sum(count)) - tf.gather(tf.cumsum(count, exclusive=True), example)
    start = index_in_example * self.doc_stride
    length = tf.minimum(tf.gather(doc_length, example) - start, tf.gather(room, example))

    positions = tf.range(self.max_seq_length)[tf.newaxis, :]
    doc_offset = tf.gather(query_length, example)[:, tf.newaxis] + 2
    final_sep = doc_offset + length[:, tf.newaxis]
    query_piece = _gather_padded(query.values, tf.gather(tf.cast(query.row_starts(), tf.int32), example)[:, tf.newaxis]
                                 + positions - 1)
    doc_piece = _gather_padded(doc_ids.values, tf.gather(tf.cast(doc_ids.row_starts(), tf.int32), example)[:, tf.newaxis]
                               + start[:, tf.newaxis] + positions - doc_offset)
    input_ids = tf.zeros_like(positions) + tf.where(positions == 0, self.tokenizer.cls_id, 0)
    input_ids = tf.where((positions >= 1) & (positions < doc_offset - 1), query_piece, input_ids)
    input_ids = tf.where((positions >= doc_offset) & (positions < final_sep), doc_piece, input_ids)
    input_ids = tf.where((positions == doc_offset - 1) | (positions == final_sep), self.tokenizer.sep_id, input_ids)
    return {"input_ids": input_ids, "input_mask": tf.cast(positions <= final_sep, tf.int32),
            "segment_ids": tf.cast((positions >= doc_offset) & (positions <= final_sep), tf.int32),
            "example": example, "start": start, "length": length, "doc_offset": doc_offset[:, 0],
            "max_context": self._max_context(example, start, length)}

  def _max_context(self, example, start, length):
    """[W, max_seq_length] bool per document offset: is this window its token's max-context window (score
    min(left, right) + 0.01 * length; ties go to the earlier window), as `windows.max_context_flags`."""
    offsets = tf.range(self.max_seq_length)[tf.newaxis, :]
    token = start[:, tf.newaxis] + offsets
    own = _context_score(offsets, length[:, tf.newaxis])
    is_max = offsets < length[:, tf.newaxis]
    own_index = tf.range(tf.size(example))
    for shift in range(-self._neighbours, self._neighbours + 1):
      if shift == 0:
        continue
      other = tf.clip_by_value(own_index + shift, 0, tf.maximum(tf.size(example) - 1, 0))
      same = ((tf.gather(example, other) == example) & (other != own_index))[:, tf.newaxis]
      other_length = tf.gather(length, other)[:, tf.newaxis]
      other_offset = token - tf.gather(start, other)[:, tf.newaxis]
      inside = (other_offset >= 0) & (other_offset < other_length)
      score = _context_score(other_offset, other_length)
      beats = (score > own) | ((score == own) & (shift < 0))
      is_max &= ~(same & inside & beats)
    return is_max

  # ---- answers ----

  def _best_answers(self, context, windows, doc_starts, doc_ends, starts, ends, start_scores, end_scores,
                    null_scores):
    """Per question, the best of the n-best built from its windows' candidate spans (text, character
    offsets, probability), plus for v2 the minimum null score over its windows."""
    doc_offset = windows["doc_offset"][:, tf.newaxis]
    start, end = starts - doc_offset, ends - doc_offset
    length = windows["length"][:, tf.newaxis]
    max_context = tf.gather(windows["max_context"], tf.clip_by_value(start, 0, self.max_seq_length - 1),
                            batch_dims=1)
    valid = ((start >= 0) & (start < length) & (end < length) & max_context & (start <= end)
             & (end - start + 1 <= self.max_answer_length))
    first_piece = (tf.gather(tf.cast(doc_starts.row_starts(), tf.int32), windows["example"]) + windows["start"])
    char_start = _gather_padded(doc_starts.values, first_piece[:, tf.newaxis] + start)
    char_end = _gather_padded(doc_ends.values, first_piece[:, tf.newaxis] + end)
    batch = tf.shape(context)[0]

    def by_question(values):
      return tf.RaggedTensor.from_value_rowids(values, windows["example"], nrows=batch)

    answer, char_from, char_to, probability = tf.map_fn(
        self._best_of_one,
        (context, by_question(valid), by_question(char_start), by_question(char_end),
         by_question(start_scores + end_scores)),
        fn_output_signature=(tf.string, tf.int32, tf.int32, tf.float32))
    answers = {"answer": answer, "start": char_from, "end": char_to, "probability": probability}
    if null_scores is not None:
      windows_of = tf.math.bincount(windows["example"], minlength=batch, maxlength=batch)
      lowest = tf.reduce_min(by_question(tf.cast(null_scores, tf.float32)), axis=1)
      answers["null_score_diff"] = tf.where(windows_of > 0, lowest, NO_FEATURE_SCORE_NULL)
    return answers

  def _best_of_one(self, args):
    """One question: candidates sorted by score (ties keep their order), the first n_best_size distinct
    texts, softmax over their scores; the version's fallback when no candidate is valid."""
    context, valid, char_start, char_end, scores = (args[0],) + tuple(
        tf.reshape(x.flat_values if isinstance(x, tf.RaggedTensor) else x, [-1]) for x in args[1:])
    order = tf.argsort(scores, direction="DESCENDING", stable=True)
    order = tf.boolean_mask(order, tf.gather(valid, order))
    begin, stop = tf.gather(char_start, order), tf.gather(char_end, order)
    raw = tf.strings.substr(tf.fill(tf.shape(order), context), begin, stop - begin, unit="UTF8_CHAR")
    left_trimmed = tf.strings.regex_replace(raw, "^" + _WHITESPACE + "+", "")
    text = tf.strings.regex_replace(left_trimmed, _WHITESPACE + "+$", "")
    begin += tf.strings.length(raw, unit="UTF8_CHAR") - tf.strings.length(left_trimmed, unit="UTF8_CHAR")
    stop = begin + tf.strings.length(text, unit="UTF8_CHAR")
    distinct, which = tf.unique(text)
    first = tf.math.unsorted_segment_min(tf.range(tf.size(text)), which, tf.size(distinct))[:self.n_best_size]
    kept_scores = tf.gather(tf.gather(scores, order), first)
    fallback_text, _ = self._task.fallback_answer
    if_none = (tf.constant(fallback_text), tf.constant(-1), tf.constant(-1), tf.constant(1.0))
    return tf.cond(
        tf.size(first) > 0,
        lambda: (tf.gather(text, first[0]), tf.gather(begin, first[0]), tf.gather(stop, first[0]),
                 1.0 / tf.reduce_sum(tf.exp(kept_scores - kept_scores[0]))),
        lambda: if_none)


def _context_score(offset, length):
  """The original's max-context score of a token at `offset` in a window of `length` document tokens."""
  return tf.cast(tf.minimum(offset, length - 1 - offset), tf.float32) + 0.01 * tf.cast(length, tf.float32)


def _gather_padded(values, index):
  """values[index] as int32, with out-of-range indices (on masked positions, or an empty batch) reading 0."""
  padded = tf.concat([tf.cast(values, tf.int32), tf.zeros([1], tf.int32)], axis=0)
  inside = (index >= 0) & (index < tf.size(values))
  return tf.gather(padded, tf.where(inside, index, tf.size(values)))
