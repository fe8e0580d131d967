from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaur1.bench import load_bench
from vaur1.bench.tasks import Example, task_view
from vaur1.errors import VaurError
from vaur1.eval.metrics import (
    baseline_outputs,
    best_constant_interval,
    binary_correct,
    compute_metrics,
    macro_f1,
    score_sample,
)
from vaur1.parse import parse_completion
from vaur1.rewards import REWARDS, answer_score, class_score, interval_score

OPTIONS = ("Two men fight", "A car parks", "A man falls", "Nothing happens")


def qa(i: int, answer: str, source: str = "msad") -> Example:
    return Example(task="qa", id=f"q{i}.mp4", split="test", source=source, options=OPTIONS, answer=answer)


def tag(i: int, interval: tuple[float, float], source: str = "msad") -> Example:
    return Example(task="tag", id=f"t{i}.mp4", split="test", source=source, interval=interval)


def cls(i: int, label: str, source: str = "msad") -> Example:
    return Example(task="cls", id=f"c{i}.mp4", split="test", source=source, anomaly_class=label)


# ---- hand-computed metrics ------------------------------------------------------------------


def test_qa_accuracy_with_missing_and_unparsed():
    examples = [qa(0, "A"), qa(1, "B"), qa(2, "C", "ucf"), qa(3, "D", "ucf"), qa(4, "A", "ucf")]
    outputs = {
        examples[0].key: "<think>x</think><answer>A</answer>",  # right
        examples[1].key: "<answer>A car parks</answer>",  # right, by option text
        examples[2].key: "<answer>a man runs</answer>",  # unparsed
        examples[3].key: "<answer>B</answer>",  # wrong
        # examples[4]: missing
    }
    result = compute_metrics("qa", examples, outputs, resamples=200)
    assert result["n"] == 5 and result["accuracy"] == 40.0
    assert (result["missing"], result["unparsed"]) == (1, 1)
    assert result["by_source"]["msad"]["accuracy"] == 100.0 and result["by_source"]["msad"]["n"] == 2
    assert result["by_source"]["ucf"]["accuracy"] == 0.0 and result["by_source"]["ucf"]["missing"] == 1
    low, high = result["ci"]["accuracy"]
    assert 0.0 <= low <= 40.0 <= high <= 100.0


def test_tag_miou_recalls_and_false_alarms():
    positives = [
        tag(0, (2.0, 6.0)),
        tag(1, (2.0, 6.0)),
        tag(2, (0.0, 10.0), "ucf"),
        tag(3, (1.0, 2.0), "ucf"),
    ]
    positives.append(tag(4, (5.0, 9.0), "ucf"))
    normals = [
        tag(10, (0.0, 0.0)),
        tag(11, (0.0, 0.0)),
        tag(12, (0.0, 0.0), "ucf"),
        tag(13, (0.0, 0.0), "ucf"),
    ]
    outputs = {
        positives[0].key: "<answer>Anomaly</answer><glue>[2, 6]</glue>",  # IoU 1
        positives[1].key: "<answer>Anomaly</answer><glue>[4, 8]</glue>",  # IoU 1/3
        positives[2].key: "<answer>Anomaly</answer><glue>[0, 6]</glue>",  # IoU 0.6
        positives[3].key: "<answer>Normal</answer><glue>[-1, -1]</glue>",  # IoU 0, predicted normal
        positives[4].key: "<answer>Anomaly</answer><glue>soon</glue>",  # unparsed
        normals[0].key: "<answer>Normal</answer><glue>[-1, -1]</glue>",
        normals[1].key: "<answer>Anomaly</answer><glue>[1, 3]</glue>",  # false alarm
        normals[2].key: "<glue>[4, 5]</glue>",  # false alarm, implied by the interval
        # normals[3]: missing, which is no correct "no alarm": counted as a false alarm
    }
    result = compute_metrics("tag", positives + normals, outputs, resamples=200)
    assert result["n"] == 5 and result["n_normal"] == 4
    assert result["miou"] == round(100 * (1 + 1 / 3 + 0.6) / 5, 2)
    assert (result["r@0.3"], result["r@0.5"], result["r@0.7"]) == (60.0, 40.0, 20.0)
    assert (result["missing"], result["unparsed"], result["predicted_normal"]) == (1, 1, 1)
    assert result["false_alarm_rate"] == 75.0
    msad = result["by_source"]["msad"]
    assert (
        msad["n"] == 2
        and msad["miou"] == round(100 * (1 + 1 / 3) / 2, 2)
        and msad["false_alarm_rate"] == 50.0
    )
    assert result["by_source"]["ucf"]["false_alarm_rate"] == 100.0
    assert set(result["ci"]) == {"miou", "r@0.3", "r@0.5", "r@0.7", "false_alarm_rate"}


def test_tag_missing_prediction_scores_zero_and_is_counted():
    examples = [tag(0, (2.0, 6.0)), tag(1, (2.0, 6.0))]
    result = compute_metrics(
        "tag", examples, {examples[0].key: "[2, 6]", examples[1].key: None}, resamples=50
    )
    assert result["miou"] == 50.0 and result["missing"] == 1
    assert result["false_alarm_rate"] is None and result["ci"]["false_alarm_rate"] is None


def test_cls_binary_multiclass_and_macro_f1():
    examples = [cls(0, "Fighting"), cls(1, "Fighting"), cls(2, "Normal"), cls(3, "Normal"), cls(4, "Fire")]
    outputs = {
        examples[0].key: "<answer>Fighting</answer>",  # right
        examples[1].key: "<answer>Fire</answer>",  # binary right, class wrong
        examples[2].key: "<answer>normal</answer>",  # right
        examples[3].key: "<answer>Fighting</answer>",  # both wrong
        examples[4].key: "<answer>a fire</answer>",  # right
    }
    result = compute_metrics("cls", examples, outputs, resamples=200)
    assert result["n"] == 5
    assert result["binary_accuracy"] == 80.0
    assert result["multiclass_accuracy"] == 60.0
    # Fighting: TP 1, FP 1, FN 1 -> 1/2; Normal: TP 1, FN 1 -> 2/3; Fire: TP 1, FP 1 -> 2/3
    assert result["macro_f1"] == round(100 * (1 / 2 + 2 / 3 + 2 / 3) / 3, 2)
    assert set(result["ci"]) == {"binary_accuracy", "multiclass_accuracy", "macro_f1"}


def test_binary_correct_rules():
    assert binary_correct("Normal", "Normal")
    assert not binary_correct("Normal", "Fire")
    assert binary_correct("Fire", "Fighting")  # any anomaly class on an anomalous video
    assert not binary_correct("Fire", "Normal")
    assert not binary_correct("Fire", None)
    assert not binary_correct("Normal", None)


def test_macro_f1_matches_sklearn_over_the_ground_truth_classes():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    targets = ["Fire", "Fire", "Normal", "Fighting", "Normal", "Arson", "Arson"]
    predictions = ["Fire", None, "Normal", "Normal", "Robbery", "Arson", "Fire"]
    labels = sorted(set(targets))
    expected = sklearn_metrics.f1_score(
        targets, [p or "none" for p in predictions], labels=labels, average="macro", zero_division=0
    )
    assert macro_f1(targets, predictions) == pytest.approx(expected)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    examples = [qa(i, "A") for i in range(60)]
    outputs = {e.key: "A" if i % 3 else "B" for i, e in enumerate(examples)}
    first = compute_metrics("qa", examples, outputs, resamples=300, seed=7)
    again = compute_metrics("qa", examples, outputs, resamples=300, seed=7)
    other = compute_metrics("qa", examples, outputs, resamples=300, seed=8)
    assert first == again
    assert first["ci"] != other["ci"]
    low, high = first["ci"]["accuracy"]
    assert low < first["accuracy"] < high and high - low < 40
    constant = compute_metrics("qa", examples, {e.key: "A" for e in examples}, resamples=50)
    assert constant["ci"]["accuracy"] == [100.0, 100.0]


def test_sample_scores_say_what_was_read():
    sample = score_sample(
        tag(0, (2.04, 6.0)), "<think>x</think><answer>Anomaly</answer><glue>0:03 - 0:05</glue>"
    )
    assert (sample.status, sample.target, sample.prediction) == ("ok", "[2.0, 6.0]", "[3.0, 5.0]")
    assert sample.iou == pytest.approx(2 / 3.96)
    assert score_sample(qa(0, "C"), None).status == "missing"
    assert score_sample(cls(0, "Fire"), "I am not sure").status == "unparsed"


def test_bad_inputs_are_clear_errors():
    with pytest.raises(VaurError, match="a qa example among tag examples"):
        compute_metrics("tag", [qa(0, "A")], {})
    with pytest.raises(VaurError, match="no interval, not a TAG example"):
        compute_metrics("tag", [Example(task="tag", id="x.mp4", interval=None)], {})
    with pytest.raises(VaurError, match="task 'reasoning' has no metrics"):
        compute_metrics("reasoning", [], {})
    with pytest.raises(VaurError, match="no baseline 'always_b'"):
        baseline_outputs("qa", [], "always_b")


# ---- rewards and metrics agree --------------------------------------------------------------

OUTPUT = st.one_of(
    st.none(),
    st.text(max_size=60),
    st.builds(
        lambda answer, glue: f"<think>x</think><answer>{answer}</answer><glue>{glue}</glue>",
        st.sampled_from(
            ["A", "B", "C", "A man falls", "Anomaly", "Normal", "Fire", "Fighting", "no anomaly", ""]
        ),
        st.sampled_from(["[2, 6]", "[3, 5]", "[-1, -1]", "[0, 0]", "0:01 - 0:04", "[6, 2]", "later", ""]),
    ),
)
AGREEMENT_EXAMPLES = [
    qa(0, "C"),
    qa(1, "A"),
    tag(0, (2.0, 6.0)),
    tag(1, (0.0, 0.0)),
    cls(0, "Fire"),
    cls(1, "Normal"),
]


@settings(max_examples=200, deadline=None)
@given(st.lists(OUTPUT, min_size=len(AGREEMENT_EXAMPLES), max_size=len(AGREEMENT_EXAMPLES)))
def test_each_metric_agrees_with_its_reward(outputs):
    """A metric applies its reward's rule to the lenient reading: on an output in the answer format the
    two agree; without an <answer> tag a QA or CLS reward pays nothing; a missing output is wrong."""
    for example, output in zip(AGREEMENT_EXAMPLES, outputs, strict=True):
        sample = score_sample(example, output)
        text = output if output is not None else ""
        parsed = parse_completion(text)
        in_format = parsed.answer_tagged and (example.task != "tag" or parsed.glue_tagged)
        if example.task == "qa":
            assert sample.correct == (answer_score(text, example, "lenient") if output is not None else 0.0)
            reward = REWARDS["accuracy"](text, example)
            assert reward == sample.correct if in_format else reward <= (1.0 if parsed.answer_tagged else 0.0)
        elif example.task == "tag" and not example.is_normal:
            assert sample.iou == (interval_score(text, example, "lenient") if output is not None else 0.0)
            if in_format:
                assert sample.iou == REWARDS["iou"](text, example)
        elif example.task == "tag":
            # on a normal video anything but a readable Normal is a false alarm, a missing output too
            assert sample.false_alarm == 1.0 - answer_score(text, example, "lenient")
            if output is None or sample.prediction is None:
                assert sample.false_alarm == 1.0
            if in_format:
                assert sample.false_alarm == 1.0 - REWARDS["accuracy"](text, example)
        else:
            assert sample.correct == (class_score(text, example, "lenient") if output is not None else 0.0)
            if in_format:
                assert sample.correct == REWARDS["class"](text, example)
            elif not parsed.answer_tagged:
                assert REWARDS["class"](text, example) == 0.0


def test_aggregates_are_means_of_the_item_scores(shared_bench):
    samples = load_bench(shared_bench / "test_msad.csv").samples
    rules = {
        "qa": lambda text, e: answer_score(text, e, "lenient"),
        "tag": lambda text, e: interval_score(text, e, "lenient"),
        "cls": lambda text, e: class_score(text, e, "lenient"),
    }
    cases = {
        "qa": ("accuracy", lambda e, i: ["<answer>A</answer>", "B. x", "the answer is C"][i % 3]),
        "tag": ("miou", lambda e, i: f"<glue>[{e.interval[0] + i % 4}, {e.interval[1]}]</glue>"),
        "cls": ("multiclass_accuracy", lambda e, i: ["<answer>Normal</answer>", "Fighting"][i % 2]),
    }
    for task, (metric_name, make) in cases.items():
        examples = task_view(samples, task)
        outputs = {e.key: make(e, i) for i, e in enumerate(examples)}
        scored = [e for e in examples if task != "tag" or not e.is_normal]
        values = [rules[task](outputs[e.key], e) for e in scored]
        result = compute_metrics(task, examples, outputs, resamples=20)
        assert result[metric_name] == round(100 * sum(values) / len(values), 2), task


def test_missing_and_unreadable_outputs_are_wrong_in_every_metric(shared_bench):
    """Predictions for a few items only: every other item is in every denominator and counts as wrong."""
    samples = load_bench(shared_bench / "test_msad.csv").samples
    right = {
        "qa": lambda e: f"<answer>{e.answer}</answer>",
        "tag": lambda e: (
            "<answer>Normal</answer><glue>[-1, -1]</glue>"
            if e.is_normal
            else f"<answer>Anomaly</answer><glue>{list(e.interval)}</glue>"
        ),
        "cls": lambda e: f"<answer>{e.anomaly_class}</answer>",
    }
    for task, answer in right.items():
        examples = task_view(samples, task)
        few = examples[:4] + [e for e in examples if task == "tag" and e.is_normal][:4]
        for filler in (None, "I cannot tell."):  # missing, then unreadable
            outputs = {e.key: answer(e) for e in few}
            if filler is not None:
                outputs |= {e.key: filler for e in examples if e.key not in outputs}
            result = compute_metrics(task, examples, outputs, resamples=5)
            left = len(examples) - len(outputs) if filler is None else 0
            assert result["missing"] == left, (task, filler)
            assert result["unparsed"] == (len(examples) - len(few) if filler else 0), (task, filler)
            if task == "qa":
                assert result["accuracy"] == round(100 * 4 / len(examples), 2)
            elif task == "cls":
                assert result["multiclass_accuracy"] == round(100 * 4 / len(examples), 2)
                assert result["binary_accuracy"] == round(100 * 4 / len(examples), 2)
            else:
                positives = [e for e in examples if not e.is_normal]
                assert (result["n"], result["n_normal"]) == (120, 120)
                assert result["miou"] == round(100 * 4 / len(positives), 2)
                assert result["r@0.3"] == round(100 * 4 / len(positives), 2)
                # 4 normal videos answered Normal; the other 116 are no correct "no alarm"
                assert result["false_alarm_rate"] == round(100 * 116 / 120, 2)


# ---- released files and baselines -----------------------------------------------------------


@pytest.mark.parametrize(
    ("split", "task", "kind", "n", "expected"),
    [
        ("test_msad", "qa", "constant_letter", 240, {"accuracy": 68.33}),
        ("test_ucf_crime", "qa", "constant_letter", 251, {"accuracy": 58.96}),
        ("test_msad", "cls", "always_normal", 240, {"binary_accuracy": 50.0, "multiclass_accuracy": 50.0}),
        ("test_ucf_crime", "cls", "always_normal", 251, {"multiclass_accuracy": 49.0}),
        ("test_ecva", "cls", "always_anomaly", 438, {"binary_accuracy": 99.54}),
        (
            "test_msad",
            "tag",
            "always_normal",
            120,
            {"miou": 0.0, "false_alarm_rate": 0.0, "predicted_normal": 120},
        ),
        ("test_ucf_crime", "tag", "always_normal", 124, {"n_normal": 150}),
    ],
)
def test_trivial_baselines_on_released_files(shared_bench, split, task, kind, n, expected):
    examples = task_view(load_bench(shared_bench / f"{split}.csv").samples, task)
    result = compute_metrics(task, examples, baseline_outputs(task, examples, kind), resamples=50)
    assert result["n"] == n
    for key, value in expected.items():
        assert result[key] == value, key


def test_the_best_constant_interval_hedges_over_the_positives_it_is_fitted_on():
    def tag(index: int, interval: tuple[float, float], source: str = "synth") -> Example:
        return Example(task="tag", id=f"v{index}.mp4", split="test", source=source, interval=interval)

    fit = [tag(0, (1.0, 3.0)), tag(1, (1.0, 3.0)), tag(2, (1.0, 3.0)), tag(3, (5.0, 8.0)), tag(4, (0.0, 0.0))]
    assert best_constant_interval(fit) == (1.0, 3.0)  # the normal clip (0, 0) does not count
    scored = [tag(5, (1.0, 3.0)), tag(6, (2.0, 4.0))]
    outputs = baseline_outputs("tag", scored, "always_interval", fit_on=fit)
    assert set(outputs.values()) == {"<answer>Anomaly</answer><glue>[1.0, 3.0]</glue>"}
    assert compute_metrics("tag", scored, outputs, resamples=20)["miou"] == pytest.approx(
        100 * (1 + 1 / 3) / 2, abs=0.01
    )
    with pytest.raises(VaurError, match="needs at least one TAG example with an anomaly interval"):
        best_constant_interval([tag(7, (0.0, 0.0))])
