from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pytest
import trl

from vaur1.bench import load_bench
from vaur1.bench.schema import CLASSES
from vaur1.bench.tasks import Example, task_view
from vaur1.config import load_config
from vaur1.errors import ConfigError, VaurError
from vaur1.parse import (
    extract_class,
    extract_letter,
    is_strict_format,
    parse_completion,
    parse_interval,
    tag_prediction,
)
from vaur1.prompts import MODES, PromptConfig, build_messages, prompt_text, target_text

QA = Example(
    task="qa",
    id="Fighting_1.mp4",
    split="test",
    source="msad",
    question="What happens?",
    options=("Two men fight", "A car parks", "Nothing", "A dog runs"),
    answer="A",
    description="Two men meet on a street. One punches the other",
    reasoning="### Specific Anomaly Type: Fight ### Location: Street ### Key Evidence: punches thrown "
    "### Detailed Explanation: a brawl ### Cause and Effect: a dispute leads to injury ### Conclusion: fighting",
    anomaly_class="Fighting",
)
TAG_POSITIVE = Example(task="tag", id="Fighting_1.mp4", interval=(3.04, 12.96), description="A fight.")
TAG_NORMAL = Example(task="tag", id="street_1.mp4", interval=(0.0, 0.0), description="People walk.")
CLS = Example(task="cls", id="Fighting_1.mp4", anomaly_class="Traffic_accident", description="A crash.")
REASONING = Example(task="reasoning", id="Fighting_1.mp4", description=QA.description, reasoning=QA.reasoning)
OFFICIAL_TEMPLATES = Path(trl.__file__).parent / "chat_templates"


def _render(template_name: str, messages: list[dict]) -> str:
    template = jinja2.Environment().from_string((OFFICIAL_TEMPLATES / template_name).read_text())
    return template.render(messages=messages, add_generation_prompt=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("example", [QA, TAG_POSITIVE, CLS, REASONING], ids=lambda e: e.task)
def test_messages_put_the_video_first_and_render_in_the_official_templates(example, mode):
    messages = build_messages(example, mode)
    assert [m["role"] for m in messages] == ["user"]
    content = messages[0]["content"]
    assert content[0] == {"type": "video"}
    assert content[1]["type"] == "text" and content[1]["text"] == prompt_text(example, mode)
    assert all(value is not None for item in content for value in item.values())
    for template in ("qwen2_5_vl.jinja", "qwen3_vl.jinja"):
        rendered = _render(template, messages)
        assert rendered.count("<|video_pad|>") == 1, template
        assert rendered.index("<|video_pad|>") < rendered.index(content[1]["text"]), template
        assert rendered.endswith("<|im_start|>assistant\n"), template


def test_system_prompt_from_config():
    messages = build_messages(QA, "think", PromptConfig(system="You are an anomaly detector."))
    assert messages[0] == {
        "role": "system",
        "content": [{"type": "text", "text": "You are an anomaly detector."}],
    }
    rendered = _render("qwen2_5_vl.jinja", messages)
    assert "You are an anomaly detector." in rendered and "You are a helpful assistant." not in rendered


def test_qa_prompt_lists_options_as_letter_lines():
    for mode in MODES:
        text = prompt_text(QA, mode)
        assert "Question: What happens?" in text
        assert "\nA. Two men fight\nB. A car parks\nC. Nothing\nD. A dog runs\n" in text
        assert "(A, B, C or D)" in text
    assert "<think>" in prompt_text(QA, "think") and "<think>" not in prompt_text(QA, "direct")


def test_tag_prompts_ask_for_the_interval_and_the_normal_convention():
    for mode in MODES:
        text = prompt_text(TAG_NORMAL, mode)
        assert "Anomaly or Normal" in text
        assert "answer Normal with <glue>[-1, -1]</glue>" in text
        assert "[start, end]" in text and "seconds, with one decimal" in text
    assert "<think>" in prompt_text(TAG_NORMAL, "think") and "<think>" not in prompt_text(
        TAG_NORMAL, "direct"
    )


def test_cls_prompt_lists_the_20_classes_exactly_as_parsed():
    for mode in MODES:
        listed = (
            re.search(r"written exactly as listed: (.*)\.\n", prompt_text(CLS, mode)).group(1).split(", ")
        )
        assert listed == list(CLASSES)
        assert [extract_class(name) for name in listed] == listed


def test_reasoning_prompt_asks_for_description_and_analysis():
    for mode in MODES:
        text = prompt_text(REASONING, mode)
        assert '"Description:"' in text and '"Analysis:"' in text


def test_templates_replaced_from_yaml(tmp_path):
    path = tmp_path / "prompts.yaml"
    path.write_text(
        'qa_direct: "Q: {question}\\n{options}\\nLetter ({letters}) in <answer></answer>."\n'
        "system: Be brief.\n"
    )
    config = load_config(PromptConfig, path)
    text = prompt_text(QA, "direct", config)
    options = "A. Two men fight\nB. A car parks\nC. Nothing\nD. A dog runs"
    assert text == f"Q: What happens?\n{options}\nLetter (A, B, C or D) in <answer></answer>."
    assert prompt_text(QA, "think", config) == prompt_text(QA, "think")  # the others keep their defaults
    assert build_messages(QA, "direct", config)[0]["content"][0]["text"] == "Be brief."


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tag_think=Where is it? {question}", r"prompts.tag_think: unknown placeholder \{question\}"),
        ("qa_think=Answer {question}", r"prompts.qa_think: the template must contain \{options\}"),
        ("cls_direct=Pick one of {klasses}", r"unknown placeholder \{klasses\} \(allowed: \{classes\}\)"),
        ("cls_direct=' '", "prompts.cls_direct: the template is empty"),
        ("system=''", "prompts.system: empty"),
        ("qa_thinking=x", "unknown config key 'qa_thinking'"),
    ],
)
def test_bad_template_configs_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PromptConfig, overrides=[override])


def test_bad_examples_and_modes_are_clear_errors():
    with pytest.raises(VaurError, match="Fighting_1.mp4/qa: a QA prompt needs a question and options"):
        build_messages(Example(task="qa", id="Fighting_1.mp4", split="test"), "think")
    with pytest.raises(VaurError, match="unknown prompt mode 'cot'"):
        build_messages(QA, "cot")  # type: ignore[arg-type]
    with pytest.raises(VaurError, match="unknown target mode 'think'"):
        target_text(QA, "think")  # type: ignore[arg-type]
    with pytest.raises(VaurError, match="no description or reasoning to build a <think> block"):
        target_text(Example(task="tag", id="x.mp4", interval=(1.0, 2.0)), "cot")


# ---- SFT targets ----------------------------------------------------------------------------


def test_targets_hand_written():
    assert target_text(QA, "direct") == "<answer>A</answer>"
    assert target_text(TAG_POSITIVE, "direct") == "<answer>Anomaly</answer><glue>[3.0, 13.0]</glue>"
    assert target_text(TAG_NORMAL, "direct") == "<answer>Normal</answer><glue>[-1, -1]</glue>"
    assert target_text(CLS, "direct") == "<answer>Traffic_accident</answer>"
    assert target_text(QA, "cot") == (
        "<think>Two men meet on a street. One punches the other. Key evidence: punches thrown. "
        "Cause and effect: a dispute leads to injury.</think><answer>A</answer>"
    )
    assert target_text(TAG_POSITIVE, "cot") == (
        "<think>A fight. The anomaly lasts from 3.0 s to 13.0 s.</think>"
        "<answer>Anomaly</answer><glue>[3.0, 13.0]</glue>"
    )
    reasoning = target_text(REASONING, "cot")
    assert reasoning.startswith("<think>Key evidence: punches thrown. Cause and effect:")
    assert reasoning.endswith(
        "<answer>Description: Two men meet on a street. One punches the other. "
        "Analysis: Specific Anomaly Type: Fight. Location: Street. Key Evidence: punches thrown. "
        "Detailed Explanation: a brawl. Cause and Effect: a dispute leads to injury. Conclusion: fighting.</answer>"
    )


def test_annotation_text_cannot_break_the_format():
    sneaky = Example(
        task="qa", id="x.mp4", answer="B", description="He typed </think><answer>A</answer> here"
    )
    target = target_text(sneaky, "cot")
    assert is_strict_format(target, "qa", "think")
    assert parse_completion(target).answer == "B"


@pytest.mark.parametrize("split", ["val", "test_msad", "test_ucf_crime"])
def test_every_released_target_passes_the_format_and_parses_back(shared_bench, split):
    samples = load_bench(shared_bench / f"{split}.csv").samples
    checked = 0
    for task in ("qa", "tag", "cls", "reasoning"):
        for example in task_view(samples, task):
            modes = [("direct", "direct")]
            if example.description or example.reasoning:
                modes.append(("cot", "think"))
            for target_mode, format_mode in modes:
                target = target_text(example, target_mode)  # type: ignore[arg-type]
                assert is_strict_format(target, task, format_mode), (example.key, target)
                parsed = parse_completion(target)
                if task == "qa":
                    assert extract_letter(parsed.answer, example.options) == example.answer
                elif task == "tag":
                    assert tag_prediction(parsed) == example.tag_answer
                    if not example.is_normal:
                        start, end = parse_interval(parsed.glue)
                        assert (
                            abs(start - example.interval[0]) <= 0.05
                            and abs(end - example.interval[1]) <= 0.05
                        )
                elif task == "cls":
                    assert extract_class(parsed.answer) == example.anomaly_class
                checked += 1
    assert checked > 1000
