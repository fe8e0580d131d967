"""Frame-level AUC / AP, the VAD literature's metrics, against scikit-learn on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from vaur1.eval.frame_metrics import (
    VideoFrames,
    average_precision,
    frame_labels,
    frame_metrics,
    frame_scores,
    roc_auc,
)


@pytest.mark.parametrize("seed", range(6))
def test_auc_and_ap_equal_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    labels = rng.integers(0, 2, size=n)
    labels[0], labels[1] = 0, 1
    # coarse scores: many ties, which is where implementations part
    scores = np.round(rng.random(n) * (2 + seed * 3)) / (2 + seed * 3)
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )


def test_one_class_has_no_auc_and_no_positives_no_ap():
    assert roc_auc(np.zeros(4), np.arange(4.0)) is None
    assert average_precision(np.zeros(4), np.arange(4.0)) is None
    assert average_precision(np.ones(3), np.array([0.2, 0.2, 0.9])) == 1.0


def test_instants_take_the_intervals_labels_and_the_mean_of_the_covering_windows():
    labels = frame_labels(10.0, [(2.5, 5.0)])
    assert labels.tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    scores = frame_scores(10.0, [(0.0, 6.0, 0.2), (4.0, 10.0, 0.8)])
    assert scores.tolist() == pytest.approx([0.2, 0.2, 0.2, 0.2, 0.5, 0.5, 0.8, 0.8, 0.8, 0.8])
    # a window that could not be decoded covers nothing: its instants are left out
    gap = frame_scores(10.0, [(0.0, 4.0, 0.1), (4.0, 8.0, None), (6.0, 10.0, 0.9)])
    assert np.isnan(gap[4:6]).all() and gap[6] == pytest.approx(0.9)
    assert frame_scores(2.4, [(0.0, 2.4, 0.3)]).tolist() == pytest.approx(
        [0.3, 0.3, 0.3]
    )  # the end is covered


def test_a_set_of_videos_is_pooled_and_its_intervals_resample_videos():
    anomalous = VideoFrames(
        frame_labels(10, [(3, 6)]), frame_scores(10, [(0, 4, 0.3), (3, 7, 0.9), (6, 10, 0.2)])
    )
    normal = VideoFrames(frame_labels(8, []), frame_scores(8, [(0, 4, 0.1), (4, 8, 0.7)]))
    skipped = VideoFrames(frame_labels(4, []), frame_scores(4, [(0, 4, None)]))
    result = frame_metrics([anomalous, normal, skipped], video_scores=[0.9, 0.7, 0.0], video_labels=[1, 0, 0])
    labels = np.concatenate([anomalous.labels, normal.labels])
    scores = np.concatenate([anomalous.scores, normal.scores])
    assert result["frame_auc"] == round(100 * roc_auc_score(labels, scores), 2)
    assert result["frame_ap"] == round(100 * average_precision_score(labels, scores), 2)
    assert result["video_auc"] == 100.0
    assert (result["instants"], result["anomalous_instants"], result["uncovered_instants"]) == (18, 3, 4)
    low, high = result["frame_auc_ci"]
    assert low <= result["frame_auc"] <= high and low < high


def test_events_match_one_to_one_by_iou():
    from vaur1.eval.frame_metrics import event_metrics, matched_events

    truth = [(10.0, 20.0), (50.0, 52.0)]
    # (12, 22) has IoU 8/12 with the first; (9, 21) 10/12: the better pair is taken, the other is left
    assert matched_events([(12.0, 22.0), (9.0, 21.0)], truth, 0.5) == 1
    assert matched_events([(49.0, 53.0)], truth, 0.5) == 1 and matched_events([(49.0, 53.0)], truth, 0.6) == 0
    assert matched_events([(20.0, 30.0)], truth, 0.0) == 0  # touching is no overlap
    result = event_metrics([[(12.0, 22.0), (49.0, 53.0), (80.0, 90.0)], []], [truth, []])
    assert result == {
        "known_events": 2,
        "predicted_events": 3,
        "recall@overlap": 100.0,
        "precision@overlap": 66.67,
        "recall@0.3": 100.0,
        "precision@0.3": 66.67,
        "recall@0.5": 100.0,
        "precision@0.5": 66.67,
    }
