"""The VAU-R1 paper's published numbers (arXiv 2505.23504, Tables 1, 2 and 5) for Qwen2.5-VL-3B-Instruct
before and after its SFT and RFT, in points, for `vaur1 report --paper`: the user's runs next to them.

QA accuracy comes from Table 1 (MSAD, UCF-Crime) and Table 5 (ECVA); TAG from Table 2 (trained on MSAD
and ECVA; UCF-Crime is out of distribution there). The paper's CLS results are pooled over the three
test sets (Table 3), so they have no per-dataset row here.
"""

from __future__ import annotations

from vaur1 import vocab
from vaur1.vocab import ACCURACY, MIOU, RECALL_03, RECALL_05, RECALL_07

MODELS = ("Qwen2.5-VL-3B", "+ SFT", "+ RFT")
SOURCES = ("msad", "ucf", "ecva")  # the VAU-Bench test sets the paper reports on

# QA accuracy: {mode: {model: {source: value}}}
QA_ACCURACY: dict[str, dict[str, dict[str, float]]] = {
    "direct": {
        "Qwen2.5-VL-3B": {"msad": 85.83, "ucf": 91.63, "ecva": 85.58},
        "+ SFT": {"msad": 86.25, "ucf": 90.84, "ecva": 89.30},
        "+ RFT": {"msad": 88.33, "ucf": 92.03, "ecva": 89.53},
    },
    "think": {
        "Qwen2.5-VL-3B": {"msad": 82.50, "ucf": 83.27, "ecva": 75.81},
        "+ SFT": {"msad": 84.58, "ucf": 90.44, "ecva": 86.98},
        "+ RFT": {"msad": 87.08, "ucf": 91.63, "ecva": 86.51},
    },
}

_TAG_KEYS = (MIOU, RECALL_03, RECALL_05, RECALL_07)
_TAG_ROWS = {  # (source, model): w/o think values, then w/ think values, in _TAG_KEYS order
    ("msad", "Qwen2.5-VL-3B"): (21.27, 30.00, 10.83, 4.17, 13.00, 16.67, 5.83, 1.67),
    ("msad", "+ SFT"): (30.65, 47.50, 30.00, 9.17, 35.17, 50.83, 34.17, 15.00),
    ("msad", "+ RFT"): (35.77, 53.33, 34.17, 15.83, 30.70, 48.33, 29.17, 12.50),
    ("ecva", "Qwen2.5-VL-3B"): (14.21, 17.16, 6.47, 3.23, 6.35, 7.21, 1.99, 0.50),
    ("ecva", "+ SFT"): (45.30, 66.67, 49.75, 24.13, 45.96, 65.67, 51.00, 26.12),
    ("ecva", "+ RFT"): (35.09, 49.00, 28.86, 19.40, 33.25, 48.51, 30.60, 18.41),
    ("ucf", "Qwen2.5-VL-3B"): (10.91, 15.32, 6.45, 3.23, 7.68, 10.48, 4.84, 1.61),
    ("ucf", "+ SFT"): (4.98, 3.23, 0.81, 0.00, 5.76, 5.65, 0.81, 0.81),
    ("ucf", "+ RFT"): (16.80, 23.39, 8.06, 4.03, 9.21, 9.68, 4.03, 1.61),
}

# TAG: {mode: {model: {source: {metric key: value}}}}
TAG_METRICS: dict[str, dict[str, dict[str, dict[str, float]]]] = {
    mode: {
        model: {
            source: dict(zip(_TAG_KEYS, values[offset : offset + 4], strict=True))
            for (source, row_model), values in _TAG_ROWS.items()
            if row_model == model
        }
        for model in MODELS
    }
    for mode, offset in (("direct", 0), ("think", 4))
}


def paper_value(task: str, mode: str, model: str, source: str, key: str) -> float | None:
    """The paper's number for one cell, or None where it published none."""
    if task == vocab.QA and key == ACCURACY:
        return QA_ACCURACY.get(mode, {}).get(model, {}).get(source)
    if task == vocab.TAG:
        return TAG_METRICS.get(mode, {}).get(model, {}).get(source, {}).get(key)
    return None
