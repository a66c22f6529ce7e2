"""Labels from raw text with a fine-tuned classifier: `python -m albert.classify`.

    python -m albert.classify --model_dir=glue_out --spm_model_file=30k-clean.model \
        --text_a="The movie was a delight." --max_seq_length=128
    python -m albert.classify --saved_model_dir=export --spm_model_file=30k-clean.model \
        --input_file=texts.jsonl --output_file=labels.jsonl

The model: `--model_dir` (a run_classifier output directory: model.ckpt-best, else the latest checkpoint;
albert_config.json beside it or `--albert_config_file`), `--init_checkpoint`, `--saved_model_dir` (the
`--export_dir` SavedModel) or `--albert_hub_module_handle` with the fine-tuned checkpoint
(`albert.cli.model_source`). Outputs are named by the run's labels.json, else by the GLUE `--task_name`,
else by their indices; a regression (STS-B) gives its score. `--engine=onnx --onnx_model=FILE` runs a file of
`python -m albert.export_onnx` (its labels travel in the file) in ONNX Runtime.
Inputs: `--text_a` (and `--text_b` for pairs) or `--input_file`: JSON lines {"id"?, "text_a", "text_b"?}
or a `.tsv` file whose header names the same columns. One text is printed with its label and
probabilities; `--output_file` receives JSON lines (`albert.tasks.classification.classify.prediction_record`),
written atomically.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

from absl import flags

from albert.cli import flags as flag_groups
from albert.cli import model_source
from albert.cli.definer import definer
from albert.core.errors import run_main
from albert.core.precision import compute_dtype
from albert.tasks.classification.classify import format_record, load_classifier, read_texts, text_from_flags
from albert.tasks.fine_tuned import write_json_lines

FLAGS = flags.FLAGS


def define_flags(flag_values=None):
  model_source.define_flags(flag_values, max_seq_length=None, max_seq_length_help=(
      "Input length in pieces, [CLS] a [SEP] (b [SEP]); longer texts are truncated like run_classifier's, so "
      "pass the length the model was trained with (default: a SavedModel's own, else 512 or the model's "
      "max_position_embeddings if smaller)."))
  define = definer(flag_values)
  define(flags.DEFINE_string, "text_a", None, "The text to classify (the first of a pair).")
  define(flags.DEFINE_string, "text_b", None, "The second text of a pair (for pair tasks such as MNLI or MRPC).")
  define(flags.DEFINE_string, "task_name", None,
         "The GLUE task whose label names the outputs take when the run has no labels.json (e.g. MNLI).")


def run(fv):
  """The whole command, driven by the flag values `fv` (parsed from `define_flags`)."""
  model_source.check_output_flags(fv, fv.text_a is not None or fv.text_b is not None)
  if fv.input_file:
    texts = read_texts(fv.input_file)
  else:
    texts = [text_from_flags(fv.text_a, fv.text_b)]
  source = model_source.resolve(fv)
  if source.setup and fv.max_seq_length is not None:
    flag_groups.validate_seq_length(fv.max_seq_length, source.setup.config)
  classifier = load_classifier(source, fv.max_seq_length, fv.batch_size, fv.task_name,
                               compute_dtype(fv.precision))
  results = classifier.classify(texts, None if fv.input_file else 1)
  if fv.input_file:
    count = write_json_lines(fv.output_file, results)
    print(f"classified {count} texts: {fv.output_file}", flush=True)
    return
  results = list(results)
  print(format_record(texts[0][1], results[0]), flush=True)
  if fv.output_file:
    write_json_lines(fv.output_file, results)


if __name__ == "__main__":
  define_flags()
  run_main(lambda argv: run(FLAGS))
