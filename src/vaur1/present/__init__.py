"""Presenting what `vaur1.eval` computed: reports, pages, plots and tables.

- `report`: report.md / report.html / report.json of one or several evaluation runs side by side
- `pages`: the HTML page frame every report, model card and scan page shares
- `gallery`: example frames of clips as inline images
- `plots`: matplotlib figures (per-source bars, IoU distributions, score timelines)
- `paper_tables`, `paper_results`: LaTeX tables and the VAU-R1 paper's own numbers beside a run's
- `scan_page`: a scanned recording's timeline page (`vaur1 analyze --scan --out`, `vaur1 serve`)
- `evaluate`: `vaur1 eval run` and `vaur1 eval score` with their report written at the end

Nothing here computes a metric: every number is read from metrics.json, sample_scores.jsonl or a scan.
"""
