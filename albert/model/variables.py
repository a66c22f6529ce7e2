"""The original checkpoint's variable names and shapes for a config (docs/compatibility.md §2.7).

One table, in the original's creation order, that the encoder and the pretraining heads create their
variables from and that the TF-Hub loader and the Hugging Face converter check weights against.
Every table is a {name: shape} dict whose shapes are lists of ints; names carry no `:0` suffix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
  from albert.model.config import AlbertConfig

ENCODER_SCOPE = "bert"
MLM_SCOPE = "cls/predictions"
SOP_SCOPE = "cls/seq_relationship"


def block_prefix(group: int, inner_group: int, scope: str = ENCODER_SCOPE) -> str:
  """The scope of one shared transformer block: `bert/encoder/transformer/group_g/inner_group_k`.

  Args:
    group: the 0-based parameter group g.
    inner_group: the 0-based block k within the group.
    scope: the encoder's top-level scope.
  Returns:
    The name prefix, without a trailing slash.
  """
  return f"{scope}/encoder/transformer/group_{group}/inner_group_{inner_group}"


def block_shapes(config: AlbertConfig) -> dict[str, list[int]]:
  """{suffix: shape} of one block's variables: post-LN self-attention, then the feed-forward part.

  Args:
    config: gives H (`hidden_size`) and the feed-forward width (`intermediate_size`).
  Returns:
    Shapes keyed by the name after the block prefix (`block_prefix`), e.g. `LayerNorm/gamma`.
  """
  h, i = config.hidden_size, config.intermediate_size
  shapes = {}
  for part in ("query", "key", "value"):
    shapes[f"attention_1/self/{part}/kernel"] = [h, h]
    shapes[f"attention_1/self/{part}/bias"] = [h]
  shapes.update({
      "attention_1/output/dense/kernel": [h, h], "attention_1/output/dense/bias": [h],
      "LayerNorm/gamma": [h], "LayerNorm/beta": [h],
      "ffn_1/intermediate/dense/kernel": [h, i], "ffn_1/intermediate/dense/bias": [i],
      "ffn_1/intermediate/output/dense/kernel": [i, h], "ffn_1/intermediate/output/dense/bias": [h],
      "LayerNorm_1/gamma": [h], "LayerNorm_1/beta": [h],
  })
  return shapes


def embedding_shapes(config: AlbertConfig, scope: str = ENCODER_SCOPE) -> dict[str, list[int]]:
  """The embeddings, their LayerNorm, and the E->H projection (present only when E != H).

  Args:
    config: gives the vocabulary, embedding, hidden, position and token-type sizes.
    scope: the encoder's top-level scope.
  Returns:
    {full name: shape}, in creation order.
  """
  e, h = config.embedding_size, config.hidden_size
  shapes = {f"{scope}/embeddings/word_embeddings": [config.vocab_size, e],
            f"{scope}/embeddings/token_type_embeddings": [config.type_vocab_size, e],
            f"{scope}/embeddings/position_embeddings": [config.max_position_embeddings, e],
            f"{scope}/embeddings/LayerNorm/gamma": [e], f"{scope}/embeddings/LayerNorm/beta": [e]}
  if e != h:
    shapes[f"{scope}/encoder/embedding_hidden_mapping_in/kernel"] = [e, h]
    shapes[f"{scope}/encoder/embedding_hidden_mapping_in/bias"] = [h]
  return shapes


def pooler_shapes(config: AlbertConfig, scope: str = ENCODER_SCOPE) -> dict[str, list[int]]:
  """The pooler: a dense [H, H] layer (tanh) on the [CLS] position's last hidden state.

  Args:
    config: gives H (`hidden_size`).
    scope: the encoder's top-level scope.
  Returns:
    {full name: shape} of the pooler's kernel and bias.
  """
  h = config.hidden_size
  return {f"{scope}/pooler/dense/kernel": [h, h], f"{scope}/pooler/dense/bias": [h]}


def encoder_shapes(config: AlbertConfig, scope: str = ENCODER_SCOPE) -> dict[str, list[int]]:
  """{name: shape} of every encoder variable, in creation order.

  Embeddings first, then each group's blocks, then the pooler: the order `AlbertModel` creates them in,
  which seeded runs rely on.

  Args:
    config: the model's hyper-parameters.
    scope: the encoder's top-level scope.
  Returns:
    {full name: shape} for the whole encoder.
  """
  shapes = embedding_shapes(config, scope)
  for group in range(config.num_hidden_groups):
    for inner_group in range(config.inner_group_num):
      prefix = block_prefix(group, inner_group, scope)
      shapes.update({f"{prefix}/{suffix}": shape for suffix, shape in block_shapes(config).items()})
  shapes.update(pooler_shapes(config, scope))
  return shapes


def masked_lm_shapes(config: AlbertConfig) -> dict[str, list[int]]:
  """The MLM head; its output matrix is the (tied) word embedding table, so only a bias of size V.

  Args:
    config: gives H, E and V.
  Returns:
    {full name: shape} under `cls/predictions`: the H->E transform, its LayerNorm and the output bias.
  """
  e = config.embedding_size
  return {f"{MLM_SCOPE}/transform/dense/kernel": [config.hidden_size, e],
          f"{MLM_SCOPE}/transform/dense/bias": [e],
          f"{MLM_SCOPE}/transform/LayerNorm/gamma": [e], f"{MLM_SCOPE}/transform/LayerNorm/beta": [e],
          f"{MLM_SCOPE}/output_bias": [config.vocab_size]}


def sentence_order_shapes(config: AlbertConfig) -> dict[str, list[int]]:
  """The sentence-order head: two logits (in order, swapped) from the pooled output.

  Args:
    config: gives H (`hidden_size`).
  Returns:
    {full name: shape} under `cls/seq_relationship`: output weights [2, H] and bias [2].
  """
  return {f"{SOP_SCOPE}/output_weights": [2, config.hidden_size], f"{SOP_SCOPE}/output_bias": [2]}


def pretraining_shapes(config: AlbertConfig) -> dict[str, list[int]]:
  """{name: shape} of the whole pretraining graph: the encoder and both heads.

  Args:
    config: the model's hyper-parameters.
  Returns:
    {full name: shape} of the encoder, then the MLM head, then the sentence-order head.
  """
  return {**encoder_shapes(config), **masked_lm_shapes(config), **sentence_order_shapes(config)}
