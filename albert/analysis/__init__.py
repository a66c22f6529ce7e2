"""Offline analysis of a fine-tuned model's SQuAD behaviour (`python -m albert.analyze_squad`).

- `latent`: PCA map, k-means clusters and nearest neighbours of latent vectors (numpy only);
- `findings`: per-example judgements: suspicious labels, near-misses, cluster and title summaries;
- `attribution`: gradient x input token attributions on the word embeddings;
- `exports`: records (JSONL/CSV) and TensorBoard Projector files;
- `report`: the self-contained HTML report and the attribution heat maps (inline SVG, no CDN).
"""
