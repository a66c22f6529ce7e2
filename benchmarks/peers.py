"""The peers `run_all.py` measures against, built with random weights from the same config as ours.

- Hugging Face `transformers` ALBERT on PyTorch: forward (`AlbertModel`) and a SQuAD training step
  (`AlbertForQuestionAnswering`, `torch.optim.AdamW`, global-norm clipping at 1.0, like ours), in float32
  or under `torch.autocast("cpu", dtype=torch.bfloat16)` (transformers' bfloat16 path on a CPU).
- `keras-hub` `AlbertBackbone` on the TensorFlow backend, compiled with and without XLA, in float32 or
  with the `mixed_bfloat16` policy.
- The `AlbertTokenizerFast` SQuAD preprocessing (offsets, stride windows, answer labels) of the
  transformers question-answering examples, written here against the tokenizer's public API.

None of these packages is a dependency of `albert`: install them from requirements-peers.txt.
Throughput does not depend on the weights, so nothing is downloaded.
"""

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil

import numpy as np

PEER_PACKAGES = ("torch", "transformers", "tokenizers", "keras", "keras-hub", "tensorflow")


def versions():
  """Installed versions of the peers' packages (None when absent)."""
  found = {}
  for name in PEER_PACKAGES:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      found[name] = None
  return found


def installed(module):
  """Whether `module` (e.g. "keras_hub") can be imported here, without importing it."""
  return importlib.util.find_spec(module) is not None


def configure_torch_threads(threads):
  import torch
  torch.set_num_threads(threads)
  try:
    torch.set_num_interop_threads(1)
  except RuntimeError:  # allowed only before torch's first parallel work; keep what is set
    pass
  return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}


def _hf_config(config):
  """transformers.AlbertConfig with our config's shapes; gelu_new is the original's tanh GELU."""
  import transformers
  return transformers.AlbertConfig(
      vocab_size=config.vocab_size, embedding_size=config.embedding_size, hidden_size=config.hidden_size,
      num_hidden_layers=config.num_hidden_layers, num_hidden_groups=config.num_hidden_groups,
      num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
      inner_group_num=config.inner_group_num, hidden_act="gelu_new",
      hidden_dropout_prob=config.hidden_dropout_prob,
      attention_probs_dropout_prob=config.attention_probs_dropout_prob,
      max_position_embeddings=config.max_position_embeddings, type_vocab_size=config.type_vocab_size,
      initializer_range=config.initializer_range)


class TorchAlbert:
  """transformers ALBERT on PyTorch (CPU): `forward(batch)` and `train_step(batch)` on numpy batches.
  `autocast` ("bfloat16") runs the forward pass (and the loss) under `torch.autocast("cpu", dtype=...)`;
  weights and optimizer stay float32, as transformers users run bfloat16 on a CPU.
  """

  name = "transformers"

  def __init__(self, config, training, autocast=None):
    import torch
    import transformers
    torch.manual_seed(0)
    self.autocast = autocast
    hf_config = _hf_config(config)
    if training:
      self.model = transformers.AlbertForQuestionAnswering(hf_config).train()
      self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5, weight_decay=0.01, eps=1e-6)
    else:
      self.model = transformers.AlbertModel(hf_config, add_pooling_layer=True).eval()

  @staticmethod
  def _tensors(batch):
    import torch
    return {"input_ids": torch.as_tensor(batch["input_ids"], dtype=torch.long),
            "attention_mask": torch.as_tensor(batch["input_mask"], dtype=torch.long),
            "token_type_ids": torch.as_tensor(batch["segment_ids"], dtype=torch.long)}

  def _autocast(self):
    import torch
    if self.autocast is None:
      return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=getattr(torch, self.autocast))

  def forward(self, batch):
    import torch
    with torch.inference_mode(), self._autocast():
      return self.model(**self._tensors(batch)).last_hidden_state.float().numpy()

  def train_step(self, batch):
    import torch
    self.optimizer.zero_grad(set_to_none=True)
    with self._autocast():
      outputs = self.model(**self._tensors(batch),
                           start_positions=torch.as_tensor(batch["start_positions"], dtype=torch.long),
                           end_positions=torch.as_tensor(batch["end_positions"], dtype=torch.long))
    outputs.loss.backward()
    torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
    self.optimizer.step()
    return float(outputs.loss.detach())


class KerasHubAlbert:
  """keras-hub `AlbertBackbone` on the TensorFlow backend; `predict_on_batch` runs its compiled
  function (`jit_compile` chooses XLA; keras' "auto" would pick no XLA on a CPU-only machine). `dtype`
  "mixed_bfloat16" is keras' bfloat16 policy (float32 variables, bfloat16 compute), given to the backbone
  like `keras.mixed_precision.set_global_policy("mixed_bfloat16")` would, without changing the global policy.
  """

  def __init__(self, config, jit_compile, dtype=None):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import keras_hub
    if keras.backend.backend() != "tensorflow":
      raise RuntimeError(f"keras-hub must run on the TensorFlow backend, not {keras.backend.backend()}")
    keras.utils.set_random_seed(0)
    self.name = ("keras_hub_xla" if jit_compile else "keras_hub") + ("_bfloat16" if dtype == "mixed_bfloat16" else "")
    self.model = keras_hub.models.AlbertBackbone(
        vocabulary_size=config.vocab_size, num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads, embedding_dim=config.embedding_size,
        hidden_dim=config.hidden_size, intermediate_dim=config.intermediate_size,
        num_groups=config.num_hidden_groups, num_inner_repetitions=config.inner_group_num,
        dropout=config.hidden_dropout_prob, max_sequence_length=config.max_position_embeddings,
        num_segments=config.type_vocab_size, dtype=dtype)
    self.model.compile(jit_compile=jit_compile)

  def forward(self, batch):
    inputs = {"token_ids": batch["input_ids"], "segment_ids": batch["segment_ids"],
              "padding_mask": batch["input_mask"]}
    return np.asarray(self.model.predict_on_batch(inputs)["sequence_output"], dtype=np.float32)


def hf_tokenizer(spm_model_file, work_dir):
  """AlbertTokenizerFast from a SentencePiece model (converted by transformers from `spiece.model`)."""
  from transformers import AlbertTokenizerFast
  directory = os.path.join(work_dir, "hf_tokenizer")
  os.makedirs(directory, exist_ok=True)
  shutil.copyfile(spm_model_file, os.path.join(directory, "spiece.model"))
  return AlbertTokenizerFast.from_pretrained(directory, do_lower_case=True)


def hf_squad_features(tokenizer, squad_file, max_seq_length, doc_stride, batch_questions=1000):
  """SQuAD training features the transformers way: one batched tokenizer call per chunk of
  questions (truncate only the context, overflow into stride windows, offsets), then start/end
  labels from the offsets. Returns counts and the share of answers whose labelled token span gives
  back exactly the answer text (per question, like ours).
  """
  with open(squad_file, encoding="utf-8") as f:
    data = json.load(f)["data"]
  questions = [(qa["question"].lstrip(), paragraph["context"], qa["answers"][0])
               for article in data for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
  counts = {"questions": len(questions), "features": 0, "windows_without_answer": 0}
  exact_by_question = {}
  for chunk_start in range(0, len(questions), batch_questions):
    chunk = questions[chunk_start:chunk_start + batch_questions]
    encoded = tokenizer(
        [q for q, _, _ in chunk], [c for _, c, _ in chunk], truncation="only_second",
        max_length=max_seq_length, stride=doc_stride, return_overflowing_tokens=True,
        return_offsets_mapping=True, padding="max_length")
    for window, question_index in enumerate(encoded["overflow_to_sample_mapping"]):
      _, context, answer = chunk[question_index]
      span = _label_window(encoded.sequence_ids(window), encoded["offset_mapping"][window], answer)
      counts["features"] += 1
      if span is None:
        counts["windows_without_answer"] += 1
        continue
      offsets = encoded["offset_mapping"][window]
      recovered = context[offsets[span[0]][0]:offsets[span[1]][1]]
      exact_by_question.setdefault(chunk_start + question_index, recovered.strip() == answer["text"].strip())
  counts["answers_exact"] = sum(exact_by_question.values())
  counts["answers_inexact"] = len(exact_by_question) - counts["answers_exact"]
  counts["exact_answer_rate"] = counts["answers_exact"] / len(exact_by_question) if exact_by_question else 1.0
  return counts


def _label_window(sequence_ids, offsets, answer):
  """(start, end) token of the answer inside this window's context tokens, or None if not inside."""
  char_start = answer["answer_start"]
  char_end = char_start + len(answer["text"])
  context = [i for i, s in enumerate(sequence_ids) if s == 1]
  if not context or offsets[context[0]][0] > char_start or offsets[context[-1]][1] < char_end:
    return None
  start = next(i for i in context if offsets[i][1] > char_start)
  end = next(i for i in reversed(context) if offsets[i][0] < char_end)
  return start, end
