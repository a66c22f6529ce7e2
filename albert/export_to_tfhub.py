r"""Exports a pretrained ALBERT as a TensorFlow 2 SavedModel for `hub.load` and `hub.KerasLayer`.

    python -m albert.export_to_tfhub --albert_directory=albert_base \
      --checkpoint_name=model.ckpt-best --export_path=hub/albert_base

The module's signatures, assets and variables are described in `albert.export.tfhub`. With
`--export_preprocess_path=DIR` a second SavedModel, the text preprocessing of `albert_en_preprocess/3`
(`albert.export.preprocess`, needs tensorflow-text), is written beside it; the TF-Hub tutorials' code then
runs on the pair unchanged.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

from absl import flags

from albert.cli.definer import definer
from albert.cli.flags import define_model_directory_flags
from albert.core import bounds
from albert.core.errors import run_main
from albert.export.preprocess import export_preprocess_module
from albert.export.tfhub import export_module

FLAGS = flags.FLAGS


def define_flags(flag_values=None):
  define_model_directory_flags(flag_values,
                               do_lower_case_help="Whether the module's tokenizer lower-cases (tokenization_info).")
  define = definer(flag_values)
  define(flags.DEFINE_bool, "use_einsum", True, "Accepted for compatibility; the exported graph uses plain matmuls, "
         "which every TensorFlow 2 runtime and converter supports.")
  define(flags.DEFINE_string, "export_path", None, "Output directory of the SavedModel.")
  define(flags.DEFINE_string, "export_preprocess_path", None,
         "Also write the text preprocessing SavedModel (the interface of albert_en_preprocess/3: strings to "
         "input_word_ids/input_mask/input_type_ids, tokenize, bert_pack_inputs) to this directory (new; needs "
         "tensorflow-text, the [serving] extra).")


def main(argv):
  del argv
  bounds.check_output_directory("export_path", FLAGS.export_path)
  bounds.check_output_directory("export_preprocess_path", FLAGS.export_preprocess_path)
  if FLAGS.export_path or not FLAGS.export_preprocess_path:
    path = export_module(FLAGS.albert_directory, FLAGS.checkpoint_name, FLAGS.export_path, FLAGS.do_lower_case)
    print(f"exported the TF-Hub module to {path}")
  if FLAGS.export_preprocess_path:
    path = export_preprocess_module(FLAGS.albert_directory, FLAGS.export_preprocess_path, FLAGS.do_lower_case)
    print(f"exported the text preprocessing model to {path}")


if __name__ == "__main__":
  define_flags()
  run_main(main)
