"""The HTML report and the attribution heat maps: one self-contained page each, plots as inline SVG.

Nothing is fetched when a page opens (no scripts, fonts or styles from a CDN), so reports can be
archived, mailed and opened offline.
"""

import html
import math

import numpy as np

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")
HEAT_SATURATION_QUANTILE = 0.9
STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1320px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.stats span { display: inline-block; margin-right: 22px; } .note { color: #666; font-size: 13px; }
.plots { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.tokens { line-height: 2; font-size: 15px; } .tokens span { padding: 1px 0; border-radius: 2px; }
.answer { border-bottom: 3px solid #111; }
"""


def _e(value):
  return html.escape(str(value), quote=True)


def _number(value, digits=3):
  return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def color_of(cluster):
  return PALETTE[cluster % len(PALETTE)]


def _page(title, body):
  return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
          f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _table(headers, rows, numeric=()):
  """An HTML table; `rows` hold already-escaped cell HTML; columns in `numeric` align right."""
  head = "".join(f"<th>{_e(h)}</th>" for h in headers)
  body = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{cell}</td>'
                                  for i, cell in enumerate(row)) + "</tr>\n" for row in rows)
  return f"<table><tr>{head}</tr>\n{body}</table>"


# ---- plots ----

def scatter_svg(records, width=760, height=560, margin=30):
  """The 2-D map: one circle per example at (x, y), coloured by cluster, area growing with loss."""
  xs = np.array([r["x"] for r in records], np.float64)
  ys = np.array([r["y"] for r in records], np.float64)
  losses = np.array([r["loss"] for r in records], np.float64)

  def scale(values, low, high):
    span = values.max() - values.min()
    return np.full_like(values, (low + high) / 2) if span == 0 else low + (values - values.min()) / span * (high - low)

  px = scale(xs, margin, width - margin)
  py = scale(ys, height - margin, margin)
  radii = 2.0 + 7.0 * np.sqrt(scale(losses, 0.0, 1.0))
  circles = []
  for record, x, y, radius in sorted(zip(records, px, py, radii), key=lambda item: -item[3]):
    tip = (f"{record['id']} (cluster {record['cluster']}, loss {record['loss']:.3f}, F1 "
           f"{record['f1']:.2f})\n{record['question']}\npredicted: {record['prediction']}")
    circles.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{color_of(record["cluster"])}" '
                   f'fill-opacity="0.65" stroke="#333" stroke-width="0.4"><title>{_e(tip)}</title></circle>')
  clusters = sorted({r["cluster"] for r in records})
  legend = "".join(f'<rect x="{width - 110}" y="{12 + 16 * i}" width="10" height="10" fill="{color_of(c)}"/>'
                   f'<text x="{width - 95}" y="{21 + 16 * i}" font-size="11">cluster {c}</text>'
                   for i, c in enumerate(clusters))
  return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
          f'viewBox="0 0 {width} {height}" role="img"><rect width="100%" height="100%" fill="#fff" '
          f'stroke="#ccc"/>{"".join(circles)}{legend}'
          f'<text x="{margin}" y="{height - 8}" font-size="11" fill="#666">PC 1 &#8594;</text>'
          f'<text x="8" y="{margin}" font-size="11" fill="#666">PC 2</text></svg>')


def histogram_svg(series, bins=20, width=460, height=260, margin=34, label="loss"):
  """Overlaid histograms of named value lists {name: (values, colour)} on shared bins."""
  everything = np.concatenate([np.asarray(v, np.float64) for v, _ in series.values() if len(v)] or [np.zeros(1)])
  low, high = float(everything.min()), float(everything.max())
  edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
  counts = {name: np.histogram(values, edges)[0] for name, (values, _) in series.items()}
  top = max(1, max(int(c.max(initial=0)) for c in counts.values()))
  bar_width = (width - 2 * margin) / bins
  bars = []
  for name, (_, colour) in series.items():
    for i, count in enumerate(counts[name]):
      bar_height = (height - 2 * margin) * count / top
      bars.append(f'<rect x="{margin + i * bar_width:.1f}" y="{height - margin - bar_height:.1f}" '
                  f'width="{bar_width - 1:.1f}" height="{bar_height:.1f}" fill="{colour}" fill-opacity="0.55">'
                  f"<title>{_e(name)}: {count} in [{edges[i]:.3g}, {edges[i + 1]:.3g})</title></rect>")
  legend = "".join(f'<rect x="{width - 150}" y="{8 + 16 * i}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{width - 135}" y="{17 + 16 * i}" font-size="11">{_e(name)} ({len(values)})</text>'
                   for i, (name, (values, colour)) in enumerate(series.items()))
  axis = (f'<line x1="{margin}" y1="{height - margin}" x2="{width - margin}" y2="{height - margin}" stroke="#444"/>'
          f'<text x="{margin}" y="{height - margin + 14}" font-size="11">{edges[0]:.3g}</text>'
          f'<text x="{width - margin}" y="{height - margin + 14}" font-size="11" '
          f'text-anchor="end">{edges[-1]:.3g}</text>'
          f'<text x="{width / 2}" y="{height - 6}" font-size="11" text-anchor="middle">{_e(label)}</text>'
          f'<text x="4" y="{margin - 6}" font-size="11">max {top}</text>')
  return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
          f'viewBox="0 0 {width} {height}" role="img"><rect width="100%" height="100%" fill="#fff" '
          f'stroke="#ccc"/>{"".join(bars)}{axis}{legend}</svg>')


# ---- the report ----

def _example_link(record, heatmaps):
  if record["id"] in heatmaps:
    return f'<a href="{_e(heatmaps[record["id"]])}">{_e(record["id"])}</a>'
  return _e(record["id"])


def _references(record):
  """Distinct references (annotators often repeat the same span)."""
  return _e(" | ".join(dict.fromkeys(record["references"])) or "(no answer)")


def _example_rows(records, heatmaps, extra=None):
  rows = []
  for r in records:
    row = [_example_link(r, heatmaps), _e(r["question"]), _references(r), _e(r["prediction"] or "(no answer)"),
           _number(r["confidence"]), _number(r["loss"]), _number(r["f1"], 2)]
    rows.append(row + ([extra(r)] if extra else []))
  return rows


EXAMPLE_HEADERS = ["id", "question", "references", "prediction", "confidence", "loss", "F1"]


def render_report(summary, records, heatmaps):
  """The report page. `summary` is summary.json's content; `heatmaps` maps ids to heat map paths."""
  overview = (f'<div class="stats"><span>model: <b>{_e(summary["checkpoint"])}</b></span>'
              f'<span>data: <b>{_e(summary["predict_file"])}</b></span><span>SQuAD v{summary["version"]}</span>'
              f'<span>examples: <b>{summary["num_examples"]}</b></span>'
              f'<span>EM <b>{_number(summary["exact_match"], 2)}</b></span>'
              f'<span>F1 <b>{_number(summary["f1"], 2)}</b></span>'
              f'<span>mean loss <b>{_number(summary["mean_loss"])}</b></span></div>')
  if summary["skipped_examples"]:
    overview += f'<p class="note">{summary["skipped_examples"]} questions without a usable reference were left out.</p>'
  correct = [r["loss"] for r in records if r["exact_match"]]
  wrong = [r["loss"] for r in records if not r["exact_match"]]
  plots = (f'<div class="plots"><div>{scatter_svg(records)}<p class="note">PCA of the standardized '
           f'{_e(summary["latent"])} latent vectors; colour = cluster, size = loss. Hover for details.</p></div>'
           f'<div>{histogram_svg({"exact match": (correct, "#2ca02c"), "wrong": (wrong, "#d62728")})}'
           f'<p class="note">Loss of correct and wrong predictions.</p>'
           f'{histogram_svg({"all": ([r["confidence"] for r in records], "#1f77b4")}, label="confidence")}</div></div>')
  cluster_rows = [[f'<span style="color:{color_of(c["cluster"])}">&#9679;</span> {c["cluster"]}', str(c["size"]),
                   _number(c["mean_loss"]), _number(c["exact_match"], 1), _number(c["f1"], 1),
                   _e(", ".join(f"{text} ({count})" for text, count in c["openings"]))]
                  for c in summary["clusters"]]
  title_rows = [[_e(t["title"]), str(t["size"]), _number(t["mean_loss"]), _number(t["exact_match"], 1),
                 _number(t["f1"], 1)] for t in summary["titles"]]
  by_id = {r["id"]: r for r in records}
  sections = [
      f"<h1>SQuAD analysis</h1>{overview}",
      f"<h2>Latent map and losses</h2>{plots}",
      f"<h2>Clusters ({len(summary['clusters'])}, {_e(summary['num_clusters_source'])})</h2>"
      + _table(["cluster", "size", "mean loss", "EM %", "F1 %", "most frequent question openings"],
               cluster_rows, numeric=(1, 2, 3, 4)),
      "<h2>Articles by mean loss</h2>" + _table(["title", "questions", "mean loss", "EM %", "F1 %"], title_rows,
                                                numeric=(1, 2, 3, 4)),
      "<h2>Suspicious labels</h2>" + _suspicious_note(summary) + _table(
          EXAMPLE_HEADERS, _example_rows([by_id[i] for i in summary["suspicious"]], heatmaps), numeric=(4, 5, 6)),
      "<h2>Near-misses</h2><p class=note>EM 0 although the answer matches a reference up to punctuation "
      "(e.g. curly quotes, which the official script keeps) or one word at an edge.</p>" + _table(
          EXAMPLE_HEADERS + ["kind"], _example_rows([by_id[m["id"]] for m in summary["near_misses"]], heatmaps,
                                                    extra=lambda r: _e(_kind(summary, r["id"]))), numeric=(4, 5, 6)),
      "<h2>Highest-loss examples</h2>" + _table(
          EXAMPLE_HEADERS, _example_rows([by_id[i] for i in summary["highest_loss"]], heatmaps), numeric=(4, 5, 6)),
  ]
  if summary["similar"]:
    sections.append("<h2>Similar examples</h2>" + "".join(_similar_section(query, neighbours, by_id, heatmaps)
                                                          for query, neighbours in summary["similar"].items()))
  if heatmaps:
    sections.append("<h2>Token attributions</h2><ul>" + "".join(
        f'<li><a href="{_e(path)}">{_e(qid)}</a>: {_e(by_id[qid]["question"])}</li>' for qid, path in heatmaps.items())
        + "</ul>")
  return _page("SQuAD analysis", "\n".join(sections))


def _kind(summary, qid):
  return next(m["kind"] for m in summary["near_misses"] if m["id"] == qid)


def _suspicious_note(summary):
  rule = summary["suspicious_rule"]
  return (f'<p class="note">Confident (&#8805; {rule["min_confidence"]}), no token in common with any '
          f'reference, loss at or above the {rule["loss_quantile"]:.2f} quantile ({_number(rule["loss_floor"])}); '
          f"highest loss first. Check these references first.</p>")


def _similar_section(query, neighbours, by_id, heatmaps):
  record = by_id[query]
  rows = [[_example_link(by_id[n["id"]], heatmaps), _number(n["similarity"]), _e(by_id[n["id"]]["question"]),
           str(by_id[n["id"]]["cluster"]), _number(by_id[n["id"]]["loss"])] for n in neighbours]
  return (f"<p><b>{_e(query)}</b>: {_e(record['question'])}</p>"
          + _table(["id", "cosine similarity", "question", "cluster", "loss"], rows, numeric=(1, 3, 4)))


# ---- heat maps ----

def _token_span(text, score, scale, underline):
  alpha = min(abs(score) / scale, 1.0) if scale > 0 else 0.0
  rgb = "214,39,40" if score > 0 else "31,119,180"
  css = f"background: rgba({rgb},{alpha:.2f})"
  return (f'<span style="{css}"{" class=answer" if underline else ""} title="{score:+.4g}">'
          f"{_e(text)}</span>")


def render_heatmap(item):
  """A heat map page for one window: `item` holds id, question, references, prediction, loss, tokens,
  scores, segments (0 question, 1 context) and the reference token span `answer` [start, end] or None."""
  scores = np.asarray(item["scores"], np.float64)
  # A few answer tokens dominate the gradient; colours saturate at this quantile so the rest shows.
  scale = float(np.quantile(np.abs(scores), HEAT_SATURATION_QUANTILE)) if len(scores) else 0.0
  start, end = item["answer"] if item["answer"] else (-1, -2)
  parts = {0: [], 1: []}
  for position, (token, score, segment) in enumerate(zip(item["tokens"], scores, item["segments"])):
    parts[segment].append(_token_span(token, score, scale, start <= position <= end))
  body = (f"<h1>Token attributions: {_e(item['id'])}</h1>"
          f'<p><a href="../report.html">back to the report</a></p>'
          f"<p><b>Question:</b> {_e(item['question'])}<br><b>References:</b> "
          f"{_e(' | '.join(dict.fromkeys(item['references'])) or '(no answer)')}<br><b>Prediction:</b> "
          f"{_e(item['prediction'] or '(no answer)')}<br><b>Loss of this window:</b> {item['loss']:.4f}</p>"
          '<p class="note">Gradient x input on the word embeddings for the loss against the reference: '
          '<span style="background: rgba(214,39,40,0.6)">red</span> pushes the loss up, '
          '<span style="background: rgba(31,119,180,0.6)">blue</span> pulls it down; the reference span '
          f"is underlined; colours saturate at the {HEAT_SATURATION_QUANTILE:.0%} quantile of |score|. Hover a "
          "token for its score.</p>"
          f'<h2>Question segment</h2><div class="tokens">{"".join(parts[0])}</div>'
          f'<h2>Context window</h2><div class="tokens">{"".join(parts[1])}</div>')
  return _page(f"attributions {item['id']}", body)
