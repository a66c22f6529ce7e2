"""Why does a fine-tuned SQuAD model fail? Per-example loss, latent map, clusters, attributions, labels.

    python -m albert.analyze_squad --albert_config_file=... --init_checkpoint=<fine-tuned> \
        --spm_model_file=... --predict_file=dev-v1.1.json --output_dir=analysis

writes to --output_dir:
- records.jsonl / records.csv: per question id, title, question, references, prediction, EM, F1,
  loss, confidence, cluster and 2-D map coordinates;
- latent_pooled.tsv, latent_mean.tsv, projector_metadata.tsv, projector_config.pbtxt: the latent
  vectors for the TensorBoard Projector (`tensorboard --logdir <output_dir>`);
- summary.json: scores, clusters, per-title ranking, suspicious labels, near-misses, similar examples;
- attributions.jsonl and attributions/*.html: gradient x input heat maps of question and context;
- report.html: everything above on one page that opens offline.

Definitions (also in summary.json):
- An example's *window* is the first window of its context that contains the first reference answer
  (the first window when none does, or for unanswerable questions). Its loss, latent vectors and
  attributions are the example's. The loss is the fine-tuning loss of that window alone: v1
  (start CE + end CE) / 2, v2 0.5·(start NLL + end NLL) + 0.5·answer-class CE.
- *Confidence* is the n-best probability of the predicted span (v1); in v2 it is multiplied by
  sigmoid(-null score) for a span, and is sigmoid(null score) for a null answer.
- v2 predictions use the null-score threshold that maximizes F1 on the analyzed file.

The steps are `albert.analysis.squad`.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

from absl import flags

from albert.analysis.squad import LATENTS, SquadAnalysis
from albert.cli import flags as flag_groups
from albert.cli.definer import definer
from albert.core import bounds
from albert.core.errors import run_main
from albert.tasks.squad import runner as squad_runner
from albert.tasks.squad.task import define_beam_flags


def define_flags(flag_values=None):
  flag_groups.define_model_flags(flag_values)
  squad_runner.define_window_flags(flag_values)
  squad_runner.define_answer_flags(flag_values)
  define = definer(flag_values)
  define_beam_flags(define)
  define(flags.DEFINE_string, "predict_file", None,
         "SQuAD 1.1 or 2.0 json WITH answers to analyze (e.g. dev-v1.1.json).")
  define(flags.DEFINE_enum, "version", "auto", ["auto", "1", "2"],
         "SQuAD head of the fine-tuned checkpoint; 'auto' reads it from --init_checkpoint.")
  define(flags.DEFINE_integer, "predict_batch_size", 8, "Windows per prediction batch.", bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_enum, "latent", "mean", list(LATENTS),
         "Latent vectors for the map, clusters and neighbours: 'mean' (mask-weighted mean of the sequence output) "
         "or 'pooled' (the pooler output). Both are exported.")
  define(flags.DEFINE_integer, "num_clusters", 0, "k-means clusters; 0 chooses k in 2..10 by silhouette.",
         bound=bounds.NON_NEGATIVE)
  define(flags.DEFINE_list, "similar_to", [], "Question ids whose nearest examples (cosine, latent space) to list.")
  define(flags.DEFINE_integer, "num_similar", 5, "How many nearest examples to list per --similar_to id.",
         bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_list, "attribution_ids", [], "Question ids to compute token attributions for "
         "(default: the --num_attributions highest-loss examples).")
  define(flags.DEFINE_integer, "num_attributions", 5, "Highest-loss examples to attribute when --attribution_ids "
         "is empty.", bound=bounds.NON_NEGATIVE)
  define(flags.DEFINE_float, "suspicious_min_confidence", 0.5, "Suspicious labels: minimum model confidence.",
         bound=bounds.FRACTION)
  define(flags.DEFINE_float, "suspicious_loss_quantile", 0.75, "Suspicious labels: minimum loss, as a quantile "
         "of all losses.", bound=bounds.FRACTION)
  define(flags.DEFINE_integer, "num_suspicious", 20, "Suspicious labels listed at most.", bound=bounds.NON_NEGATIVE)
  define(flags.DEFINE_integer, "seed", 12345, "Seed of k-means (the analysis is deterministic for a given seed).",
         bound=bounds.NON_NEGATIVE)


def main(argv):
  del argv
  SquadAnalysis(flags.FLAGS).run()


if __name__ == "__main__":
  define_flags()
  run_main(main)
