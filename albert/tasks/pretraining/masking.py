"""Whole-word n-gram masking of pretraining sequences, the original's rules (docs/compatibility.md §7.4).

Kept exactly, because it shapes released data: the start-piece rule of SentencePiece pieces (quirks 2
and 17: "€"/"£" never match, a group may continue across [SEP]), p(n) ∝ 1/n n-gram lengths, 80/10/10
replacement drawn from every vocabulary entry, and the order of every draw from the seeded RNG. The
n-gram length comes from a second seeded RNG instead of NumPy's unseeded one (quirk 3).
"""

import bisect
import functools
import itertools
from typing import NamedTuple

CLS, SEP, MASK = "[CLS]", "[SEP]", "[MASK]"

# The original's start-piece punctuation: string.punctuation without ', <, = and >. Its intended "€" and
# "£" were added as bytes and never match under Python 3 (quirk 2), so they are not here.
_START_PUNCTUATION = frozenset('!"#$%&()*+,-./:;?@[\\]^_`{|}~')
_WORD_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") | _START_PUNCTUATION


def is_start_piece_sentencepiece(piece):
  """The original start-piece rule for SentencePiece pieces, quirks included."""
  return (piece.startswith("\u2581") or piece.startswith("<") or piece in _START_PUNCTUATION
          or not all(char.lower() in _WORD_CHARACTERS for char in piece))


def is_start_piece_wordpiece(piece):
  return not piece.startswith("##")


def ngram_cumulative_probabilities(ngram, favor_shorter_ngram):
  """Cumulative p(n) ∝ 1/n for n = 1..ngram, reversed when longer n-grams are favoured."""
  weights = [1.0 / n for n in range(1, ngram + 1)]
  if not favor_shorter_ngram:
    weights.reverse()
  total = sum(weights)
  return list(itertools.accumulate(weight / total for weight in weights))


class MaskedTokens(NamedTuple):
  tokens: list
  positions: list
  labels: list
  token_boundary: list


class Masker:
  """Whole-word n-gram masking of one [CLS] A [SEP] B [SEP] sequence."""

  def __init__(self, vocab_words, is_start_piece, masked_lm_prob, max_predictions_per_seq, ngram=3,
               favor_shorter_ngram=True, do_whole_word_mask=True, do_permutation=False):
    self.vocab_words = vocab_words
    self.is_start_piece = functools.lru_cache(maxsize=1 << 16)(is_start_piece)
    self.masked_lm_prob = masked_lm_prob
    self.max_predictions_per_seq = max_predictions_per_seq
    self.ngram = ngram
    self.do_whole_word_mask = do_whole_word_mask
    self.do_permutation = do_permutation
    self._cumulative = ngram_cumulative_probabilities(ngram, favor_shorter_ngram)

  def word_groups(self, tokens):
    """Groups of token indices that are masked together, and the token_boundary feature.

    A non-start piece joins the previous group even across [SEP] (quirk 17), as in the original.
    """
    groups, boundary = [], [0] * len(tokens)
    for index, token in enumerate(tokens):
      if token in (CLS, SEP):
        boundary[index] = 1
        continue
      starts_word = self.is_start_piece(token)
      if self.do_whole_word_mask and groups and not starts_word:
        groups[-1].append(index)
      else:
        groups.append([index])
        boundary[index] = int(starts_word)
    return groups, boundary

  def num_to_predict(self, num_tokens):
    return min(self.max_predictions_per_seq, max(1, int(round(num_tokens * self.masked_lm_prob))))

  def mask(self, tokens, rng, ngram_rng):
    """Masks `tokens`; `rng` makes every draw the original made with its seeded RNG, `ngram_rng` draws
    the n-gram lengths (the original used NumPy's unseeded RNG there)."""
    groups, boundary = self.word_groups(tokens)
    budget = self.num_to_predict(len(tokens))
    candidate_sets = [[groups[start:start + n] for n in range(1, self.ngram + 1)] for start in range(len(groups))]
    rng.shuffle(candidate_sets)
    output = list(tokens)
    masked = self.select_positions(candidate_sets, budget, set(), ngram_rng)
    for index in masked:
      output[index] = self._replacement(tokens[index], rng)
    predictions = [(index, tokens[index]) for index in masked]
    rng.shuffle(candidate_sets)
    if self.do_permutation:
      predictions.extend(self._permute(output, candidate_sets, budget, set(masked), rng, ngram_rng))
    predictions.sort()
    return MaskedTokens(output, [index for index, _ in predictions], [label for _, label in predictions],
                        boundary)

  def _replacement(self, token, rng):
    if rng.random() < 0.8:
      return MASK
    if rng.random() < 0.5:
      return token
    return self.vocab_words[rng.randint(0, len(self.vocab_words) - 1)]

  def select_positions(self, candidate_sets, budget, covered, ngram_rng):
    """Token indices chosen from the shuffled n-gram candidate sets, in the order they were taken."""
    chosen = []
    for candidates in candidate_sets:
      if len(chosen) >= budget:
        break
      n = bisect.bisect_right(self._cumulative, ngram_rng.random() * self._cumulative[-1]) + 1
      indices = _flatten(candidates[n - 1])
      while len(chosen) + len(indices) > budget and n > 1:
        n -= 1
        indices = _flatten(candidates[n - 1])
      if len(chosen) + len(indices) > budget or any(index in covered for index in indices):
        continue
      chosen.extend(indices)
      covered.update(indices)
    return chosen

  def _permute(self, output, candidate_sets, budget, covered, rng, ngram_rng):
    """The do_permutation pass: shuffles the tokens among a second set of positions; returns their
    (position, token before permutation) predictions."""
    selected = sorted(self.select_positions(candidate_sets, budget, covered, ngram_rng))
    sources = list(selected)
    rng.shuffle(sources)
    before = list(output)
    for position, source in zip(selected, sources):
      output[position] = before[source]
    return [(position, before[position]) for position in selected]


def _flatten(groups):
  return [index for group in groups for index in group]
