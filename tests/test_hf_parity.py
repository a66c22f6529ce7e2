"""AlbertModel / pretraining heads against Hugging Face's PyTorch ALBERT with the same weights.

The weight mapping (original checkpoint names -> Hugging Face parameter names) is written here, so the
test checks both the model math and that our variables mean what the original names say.
"""

import numpy as np
import pytest

from albert import modeling
from albert.model.config import AlbertConfig

torch = pytest.importorskip("torch", reason="Hugging Face parity needs PyTorch: pip install torch")
transformers = pytest.importorskip("transformers", reason="Hugging Face parity needs: pip install transformers")

TOLERANCE = 1e-4

# Per inner group: our suffix -> (HF suffix under albert_layers.{k}, is a Linear weight stored [out, in]).
BLOCK_MAPPING = {
    "attention_1/self/query/kernel": ("attention.query.weight", True),
    "attention_1/self/query/bias": ("attention.query.bias", False),
    "attention_1/self/key/kernel": ("attention.key.weight", True),
    "attention_1/self/key/bias": ("attention.key.bias", False),
    "attention_1/self/value/kernel": ("attention.value.weight", True),
    "attention_1/self/value/bias": ("attention.value.bias", False),
    "attention_1/output/dense/kernel": ("attention.dense.weight", True),
    "attention_1/output/dense/bias": ("attention.dense.bias", False),
    "LayerNorm/gamma": ("attention.LayerNorm.weight", False),
    "LayerNorm/beta": ("attention.LayerNorm.bias", False),
    "ffn_1/intermediate/dense/kernel": ("ffn.weight", True),
    "ffn_1/intermediate/dense/bias": ("ffn.bias", False),
    "ffn_1/intermediate/output/dense/kernel": ("ffn_output.weight", True),
    "ffn_1/intermediate/output/dense/bias": ("ffn_output.bias", False),
    "LayerNorm_1/gamma": ("full_layer_layer_norm.weight", False),
    "LayerNorm_1/beta": ("full_layer_layer_norm.bias", False),
}

TOP_MAPPING = {
    "bert/embeddings/word_embeddings": ("albert.embeddings.word_embeddings.weight", False),
    "bert/embeddings/token_type_embeddings": ("albert.embeddings.token_type_embeddings.weight", False),
    "bert/embeddings/position_embeddings": ("albert.embeddings.position_embeddings.weight", False),
    "bert/embeddings/LayerNorm/gamma": ("albert.embeddings.LayerNorm.weight", False),
    "bert/embeddings/LayerNorm/beta": ("albert.embeddings.LayerNorm.bias", False),
    "bert/encoder/embedding_hidden_mapping_in/kernel": ("albert.encoder.embedding_hidden_mapping_in.weight", True),
    "bert/encoder/embedding_hidden_mapping_in/bias": ("albert.encoder.embedding_hidden_mapping_in.bias", False),
    "bert/pooler/dense/kernel": ("albert.pooler.weight", True),
    "bert/pooler/dense/bias": ("albert.pooler.bias", False),
    "cls/predictions/transform/dense/kernel": ("predictions.dense.weight", True),
    "cls/predictions/transform/dense/bias": ("predictions.dense.bias", False),
    "cls/predictions/transform/LayerNorm/gamma": ("predictions.LayerNorm.weight", False),
    "cls/predictions/transform/LayerNorm/beta": ("predictions.LayerNorm.bias", False),
    "cls/predictions/output_bias": ("predictions.bias", False),
    # [2, H] is already PyTorch's Linear layout [out, in].
    "cls/seq_relationship/output_weights": ("sop_classifier.classifier.weight", False),
    "cls/seq_relationship/output_bias": ("sop_classifier.classifier.bias", False),
}


def hf_state_dict(named_variables):
  """Our original-named variables as a Hugging Face AlbertForPreTraining state dict."""
  state = {}
  for name, variable in named_variables.items():
    if name in TOP_MAPPING:
      hf_name, transpose = TOP_MAPPING[name]
    else:
      prefix, suffix = name.split("/inner_group_")
      group = prefix.rsplit("group_", 1)[1]
      inner, suffix = suffix.split("/", 1)
      hf_suffix, transpose = BLOCK_MAPPING[suffix]
      hf_name = f"albert.encoder.albert_layer_groups.{group}.albert_layers.{inner}.{hf_suffix}"
    value = variable.numpy()
    state[hf_name] = torch.from_numpy(np.ascontiguousarray(value.T if transpose else value))
  if "albert.encoder.embedding_hidden_mapping_in.weight" not in state:
    # HF always has the mapping; with E == H the original has none, which is the identity.
    hidden_size = state["albert.pooler.weight"].shape[0]
    state["albert.encoder.embedding_hidden_mapping_in.weight"] = torch.eye(hidden_size)
    state["albert.encoder.embedding_hidden_mapping_in.bias"] = torch.zeros(hidden_size)
  state["predictions.decoder.weight"] = state["albert.embeddings.word_embeddings.weight"]
  state["predictions.decoder.bias"] = state["predictions.bias"]
  return state


def hf_config(config):
  return transformers.AlbertConfig(
      vocab_size=config.vocab_size, embedding_size=config.embedding_size, hidden_size=config.hidden_size,
      num_hidden_layers=config.num_hidden_layers, num_hidden_groups=config.num_hidden_groups,
      num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
      inner_group_num=config.inner_group_num, hidden_act="gelu_new", hidden_dropout_prob=0.0,
      attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0,
      max_position_embeddings=config.max_position_embeddings, type_vocab_size=config.type_vocab_size,
      layer_norm_eps=1e-12)


def load_hf(model_class, config, state):
  """A Hugging Face model whose every parameter comes from `state` (a KeyError names any we lack)."""
  model = model_class(hf_config(config)).eval()
  model.load_state_dict({name: state[name] for name in model.state_dict()})
  return model


CONFIGS = {
    "E!=H_G2_K2_L3": dict(embedding_size=16, hidden_size=32, num_hidden_layers=3, num_hidden_groups=2,
                          inner_group_num=2),
    "E==H_L4": dict(embedding_size=32, hidden_size=32, num_hidden_layers=4, num_hidden_groups=1, inner_group_num=1),
}


@pytest.fixture(params=sorted(CONFIGS))
def setup(request):
  config = AlbertConfig(vocab_size=500, num_attention_heads=4, intermediate_size=64, hidden_act="gelu",
                        max_position_embeddings=64, type_vocab_size=2, **CONFIGS[request.param])
  model = modeling.AlbertPretrainingModel(config)
  rng = np.random.default_rng(7)
  for name, variable in sorted(model.named_variables().items()):
    values = rng.normal(0.0, 0.2, variable.shape)
    variable.assign((1.0 + values if name.endswith("gamma") else values).astype(np.float32))
  input_ids = rng.integers(0, config.vocab_size, (2, 20)).astype(np.int32)
  input_mask = np.ones_like(input_ids)
  input_mask[1, 13:] = 0
  token_type_ids = np.zeros_like(input_ids)
  token_type_ids[:, 8:] = 1
  positions = np.array([[1, 4, 7], [0, 2, 12]], np.int32)
  inputs = dict(input_ids=input_ids, input_mask=input_mask, token_type_ids=token_type_ids, positions=positions)
  return config, model, hf_state_dict(model.named_variables()), inputs


def torch_inputs(inputs):
  return dict(input_ids=torch.from_numpy(inputs["input_ids"]).long(),
              attention_mask=torch.from_numpy(inputs["input_mask"]).long(),
              token_type_ids=torch.from_numpy(inputs["token_type_ids"]).long())


def test_encoder_matches_hf_albert_model(setup):
  config, model, state, inputs = setup
  hf_model = load_hf(transformers.AlbertModel, config,
                     {k[len("albert."):]: v for k, v in state.items() if k.startswith("albert.")})
  with torch.no_grad():
    expected = hf_model(**torch_inputs(inputs), output_hidden_states=True)
  ours = model.model(inputs["input_ids"], inputs["input_mask"], inputs["token_type_ids"])
  np.testing.assert_allclose(ours.sequence_output, expected.last_hidden_state.numpy(), atol=TOLERANCE, rtol=TOLERANCE)
  np.testing.assert_allclose(ours.pooled_output, expected.pooler_output.numpy(), atol=TOLERANCE, rtol=TOLERANCE)
  # transformers >= 5 reports every inner-group output like we do; older versions one state per layer.
  hidden_states = expected.hidden_states[1:]
  ours_layers = ours.all_encoder_layers
  if len(hidden_states) == config.num_hidden_layers:
    ours_layers = ours_layers[config.inner_group_num - 1::config.inner_group_num]
  assert len(ours_layers) == len(hidden_states)
  for got, want in zip(ours_layers, hidden_states):
    np.testing.assert_allclose(got, want.numpy(), atol=TOLERANCE, rtol=TOLERANCE)


def test_mlm_logits_match_hf_albert_for_masked_lm(setup):
  config, model, state, inputs = setup
  hf_model = load_hf(transformers.AlbertForMaskedLM, config, state)
  with torch.no_grad():
    all_logits = hf_model(**torch_inputs(inputs)).logits.numpy()  # [B, S, V]
  positions = inputs["positions"]
  expected = np.concatenate([all_logits[b, positions[b]] for b in range(len(positions))])
  ours = model(inputs["input_ids"], inputs["input_mask"], inputs["token_type_ids"], positions)
  np.testing.assert_allclose(ours.masked_lm_logits, expected, atol=TOLERANCE, rtol=TOLERANCE)


def test_sop_logits_match_hf_albert_for_pretraining(setup):
  config, model, state, inputs = setup
  hf_model = load_hf(transformers.AlbertForPreTraining, config, state)
  with torch.no_grad():
    expected = hf_model(**torch_inputs(inputs)).sop_logits.numpy()
  ours = model(inputs["input_ids"], inputs["input_mask"], inputs["token_type_ids"], inputs["positions"])
  np.testing.assert_allclose(ours.sentence_order_logits, expected, atol=TOLERANCE, rtol=TOLERANCE)
