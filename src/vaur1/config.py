"""Typed configs: dataclasses filled from YAML files and dotted command-line overrides.

    cfg = load_config(GRPOTrainConfig, "configs/grpo/tiny_cpu.yaml", ["optim.learning_rate=1e-6"])

Layers, each over the one before: the dataclass defaults; `defaults` (a job's own, e.g. evaluation
decodes greedily); the YAML file, over the file its `base:` key names (a path relative to it, which
may name a base of its own); `flags` (dotted keys from command-line options); and `key=value`
overrides. An unknown key or a value of the wrong type raises `ConfigError` naming the dotted key.
Numbers written as `1e-6` (which YAML 1.1 reads as a string) are accepted where a float is expected.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import yaml

from vaur1.errors import ConfigError
from vaur1.files import write_text

T = TypeVar("T")


def shown(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters: an error message never prints an unbounded value."""
    short = reprlib.Repr()
    short.maxstring, short.maxother, short.maxlist, short.maxdict, short.maxlevel = limit, limit, 8, 8, 3
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting where the conversion is lossless."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {shown(value)} is not {_type_name(tp)}")
    if origin is typing.Literal:
        if value not in get_args(tp):
            allowed = ", ".join(repr(a) for a in get_args(tp))
            raise ConfigError(f"{key}: {shown(value)} is not one of {allowed}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {shown(value)}")
        return from_dict(tp, value, prefix=key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {shown(value)}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
            return tuple(
                _coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {shown(value)}")
        key_type, value_type = get_args(tp) or (Any, Any)
        return {_coerce(k, key_type, key): _coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {shown(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {shown(value)}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {shown(value)}")
        # no setting means anything by inf or nan: a learning rate of .inf trained an all-NaN model
        if not math.isfinite(number):
            raise ConfigError(f"{key}: must be a finite number, got {shown(value)}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {shown(value)}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {shown(value)}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass `cls` from a nested dict, checking every key and type."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown config key {shown(key)} (known here: {known})")
        kwargs[name] = _coerce(value, hints[name], key)
    try:
        obj = cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{prefix or cls.__name__}: {err}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def to_dict(obj: Any) -> Any:
    """A dataclass as plain YAML-friendly data (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(
            f"override {shown(text)} is not of the form key=value (e.g. optim.learning_rate=1e-6)"
        )
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {shown(text)} has an empty key")
    try:
        value = load_yaml_text(raw) if raw.strip() else ""
    except yaml.constructor.ConstructorError as err:  # valid YAML that names a key twice
        raise ConfigError(f"override {shown(text)}: {yaml_problem(err)}") from None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


_MISSING = object()


def dotted_get(data: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """The value at a dotted key of a nested dict (`optim.learning_rate`), or `default`."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def has_dotted(data: dict[str, Any], dotted: str) -> bool:
    return dotted_get(data, dotted, _MISSING) is not _MISSING


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {shown(text)}: {shown(part)} is not a section")
            node = child
        node[path[-1]] = value
    return data


SHIPPED = Path(__file__).parent / "configs"  # the configs that install with the package


def shipped_configs() -> list[str]:
    """The names of the shipped configs (`grpo/tiny_cpu`, `qwen2_5_vl_3b/cotrain`, ...)."""
    return sorted(str(p.relative_to(SHIPPED).with_suffix("")) for p in SHIPPED.rglob("*.yaml"))


def config_path(name: str | Path) -> Path:
    """A config file: `name` as a path when it exists, else a shipped config of that name (with or
    without `.yaml`, with or without a leading `configs/`)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    relative = Path(str(name).removeprefix("configs/"))
    for candidate in (SHIPPED / relative, SHIPPED / relative.with_suffix(".yaml")):
        if candidate.is_file() and candidate.resolve().is_relative_to(SHIPPED.resolve()):
            return candidate
    raise ConfigError(
        f"{name}: no such config file, and no shipped config of that name (see `vaur1 config list`)"
    )


MAX_VALUES = 100_000  # values in a config once its YAML aliases are expanded


def _expanded_size(value: Any, limit: int) -> int:
    """How many values `value` holds with shared (aliased) parts counted each time they appear; stops
    counting past `limit`. Linear in the distinct objects, so a "billion laughs" file costs nothing."""
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        total = 1
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            total = min(total + size(child), limit + 1)
        sizes[id(node)] = total
        return total

    return size(value)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that names a key twice: PyYAML keeps the last value
    silently, so a setting written twice in a config would change the run without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<`: a key it brings may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: the base loader names that error itself
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"the key {key!r} appears twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def yaml_problem(err: BaseException) -> str:
    """A YAML error in one short line: what is wrong, and where."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if not problem:
        return shown(err, 300)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return shown(f"{problem}{where}", 300).strip("'\"")


def load_yaml_text(text: str) -> Any:
    """YAML text as Python values, safely, with a key named twice in a mapping an error."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: builds plain values only


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {err.start}); a config is a YAML text file"
        ) from None
    except (yaml.YAMLError, RecursionError) as err:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(err)}") from None
    if _expanded_size(data, MAX_VALUES) > MAX_VALUES:
        raise ConfigError(f"{path}: its YAML aliases expand to more than {MAX_VALUES:,} values; refused")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping at the top level")
    return data


MAX_BASE_DEPTH = 8


def read_config_file(path: str | Path, depth: int = 0) -> dict[str, Any]:
    """A YAML config merged over the file its `base:` names (relative to it), recursively."""
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if depth >= MAX_BASE_DEPTH:
        raise ConfigError(f"{path}: more than {MAX_BASE_DEPTH} base: files in a chain (a loop?)")
    return merge(read_config_file(Path(path).parent / str(base), depth + 1), data)


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`: sections merge key by key, anything else in `top` replaces."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def config_data(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    defaults: dict[str, Any] | None = None,
    flags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every layer but the dataclass defaults, merged into one nested dict (see the module docstring)."""
    data = merge(
        copy.deepcopy(defaults or {}), read_config_file(config_path(path)) if path is not None else {}
    )
    # JSON is valid YAML, so a flag's value survives the override parser exactly (paths included)
    flag_overrides = [f"{key}={json.dumps(value)}" for key, value in (flags or {}).items()]
    return apply_overrides(data, [*flag_overrides, *(overrides or [])])


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    defaults: dict[str, Any] | None = None,
    flags: dict[str, Any] | None = None,
) -> T:
    """The config `cls` from every layer, validated."""
    return from_dict(cls, config_data(path, overrides, defaults=defaults, flags=flags))


def save_config(obj: Any, path: str | Path) -> None:
    write_text(path, yaml.safe_dump(to_dict(obj), sort_keys=False))


# ---- every setting, with its default and its help ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setting:
    key: str  # dotted, e.g. optim.learning_rate
    type: str
    default: Any
    help: str


def _field_comments(cls: type) -> dict[str, str]:
    """Each field's comment in `cls`'s own source: the comment at the end of its line (or of any line
    of a field written over several), else the comment lines right above it."""
    import ast
    import inspect
    import io
    import textwrap
    import tokenize

    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code_lines.add(token.start[0])
    found: dict[str, str] = {}
    class_node = ast.parse(source).body[0]
    for node in getattr(class_node, "body", []):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        trailing = [
            comments[n]
            for n in range(node.lineno, (node.end_lineno or node.lineno) + 1)
            if n in comments and n in code_lines
        ]
        above: list[str] = []
        line = node.lineno - 1
        while line in comments and line not in code_lines:
            above.insert(0, comments[line])
            line -= 1
        text = " ".join(trailing) if trailing else " ".join(above)
        if text:
            found[node.target.id] = text
    return found


def _help(cls: type) -> dict[str, str]:
    """Field comments of `cls` and its bases (a subclass's own comment wins)."""
    merged: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            merged.update(_field_comments(klass))
    return merged


def _is_section(tp: Any) -> type | None:
    """The dataclass a field holds (also when optional), or None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if get_origin(tp) in (typing.Union, types.UnionType):
        classes = [a for a in get_args(tp) if dataclasses.is_dataclass(a)]
        return classes[0] if len(classes) == 1 else None
    return None


def settings(obj: Any, prefix: str = "") -> list[Setting]:
    """Every setting of a config class or instance (the instance's values as defaults), nested
    sections flattened to dotted keys, each with its type and its one line of help."""
    cls = obj if isinstance(obj, type) else type(obj)
    instance = obj if not isinstance(obj, type) else None
    hints = get_type_hints(cls)
    helps = _help(cls)
    found: list[Setting] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = f"{prefix}{f.name}"
        if instance is not None:
            value = getattr(instance, f.name)
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = None
        section = _is_section(hints[f.name])
        if section is not None:
            nested = value if value is not None else section
            found += settings(nested, f"{key}.")
            continue
        found.append(Setting(key, _type_name(hints[f.name]), to_dict(value), helps.get(f.name, "")))
    return found
