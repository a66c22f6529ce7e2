"""Answers from raw text with a fine-tuned SQuAD model: `python -m albert.answer`.

    python -m albert.answer --model_dir=squad_out --spm_model_file=30k-clean.model \
        --question="Who wrote it?" --context_file=article.txt
    python -m albert.answer --saved_model_dir=export --spm_model_file=30k-clean.model \
        --input_file=questions.jsonl --output_file=answers.jsonl

The model: `--model_dir` (a run_squad_* output directory: model.ckpt-best, else the latest checkpoint;
albert_config.json beside it or `--albert_config_file`), `--init_checkpoint`, `--saved_model_dir` (the
`--export_dir` SavedModel) or `--albert_hub_module_handle` with the fine-tuned checkpoint
(`albert.cli.model_source`), or `--engine=onnx --onnx_model=FILE` (`python -m albert.export_onnx`; without
`--onnx_model` the checkpoint runs in ONNX Runtime, exported in memory). Its SQuAD version is read from the model.
Inputs: `--question` with `--context` or `--context_file`, or `--input_file`: JSON lines
{"id"?, "question", "context"} or a SQuAD `.json` file. One question is printed with its answer, character
offsets (`context[start:end]` is the answer), probability and n-best list; `--output_file` receives JSON
lines (`albert.tasks.squad.answer.prediction_record`), written atomically.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

from absl import flags

from albert.cli import flags as flag_groups
from albert.cli import model_source
from albert.cli.definer import definer
from albert.core import bounds
from albert.core.errors import run_main
from albert.core.precision import compute_dtype
from albert.tasks.squad.answer import AnswerOptions, format_record, load_answerer, question_from_flags, read_questions
from albert.tasks.fine_tuned import write_json_lines
from albert.tasks.squad.runner import define_answer_flags
from albert.tasks.squad.task import AnswerRules, define_beam_flags

FLAGS = flags.FLAGS
SINGLE_INPUT_FLAGS = ("question", "context", "context_file")


def define_flags(flag_values=None):
  model_source.define_flags(flag_values, max_seq_length=384, max_seq_length_help=(
      "Window length in pieces, [CLS] question [SEP] context [SEP]; longer contexts are read in windows "
      "(default: a SavedModel's own length, else 384)."))
  define = definer(flag_values)
  define(flags.DEFINE_string, "question", None, "The question.")
  define(flags.DEFINE_string, "context", None, "The text to answer it from.")
  define(flags.DEFINE_string, "context_file", None, "A UTF-8 file holding the context (for long texts).")
  define(flags.DEFINE_integer, "doc_stride", 128, "How far apart consecutive windows of a long context start.",
         bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_integer, "max_query_length", None,
         "Truncate questions to this many pieces, like run_squad_* (default: keep whole questions; one that "
         "leaves no room for the context is an error).", bound=bounds.AT_LEAST_ONE)
  define_answer_flags(flag_values)
  define(flags.DEFINE_bool, "version_2_with_negative", False,
         "The model is a SQuAD 2.0 model (default: the model says which; given, the flag is checked against it).")
  define(flags.DEFINE_float, "null_score_diff_threshold", None,
         "SQuAD 2.0: answer '' when the null score diff is >= this (default: the threshold the run tuned on its "
         "dev set, from eval_results.json beside the checkpoint; else always a span).")
  define_beam_flags(define)


def run(fv):
  """The whole command, driven by the flag values `fv` (parsed from `define_flags`)."""
  model_source.check_output_flags(fv, any(fv[name].value is not None for name in SINGLE_INPUT_FLAGS))
  if fv.input_file:
    questions, total = read_questions(fv.input_file)
  else:
    questions, total = [question_from_flags(fv.question, fv.context, fv.context_file)], 1
  source = model_source.resolve(fv)
  if source.setup:
    flag_groups.validate_seq_length(fv.max_seq_length, source.setup.config)
  options = AnswerOptions(
      max_seq_length=None if source.saved_model and not fv["max_seq_length"].present else fv.max_seq_length,
      doc_stride=fv.doc_stride, max_query_length=fv.max_query_length, batch_size=fv.batch_size,
      rules=AnswerRules(fv.n_best_size, fv.max_answer_length, fv.null_score_diff_threshold),
      version_2=fv.version_2_with_negative if fv["version_2_with_negative"].present else None,
      start_n_top=fv.start_n_top, end_n_top=fv.end_n_top, compute_dtype=compute_dtype(fv.precision))
  answerer = load_answerer(source, options)
  results = answerer.answer(questions, total)
  if fv.input_file:
    count = write_json_lines(fv.output_file, results)
    print(f"answered {count} questions: {fv.output_file}", flush=True)
    return
  results = list(results)
  print(format_record(results[0], answerer.threshold), flush=True)
  if fv.output_file:
    write_json_lines(fv.output_file, results)


if __name__ == "__main__":
  define_flags()
  run_main(lambda argv: run(FLAGS))
