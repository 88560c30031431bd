"""Experiment configs: frozen dataclasses with presets and ``--set key=value`` overrides.

A config is a ``@dataclasses.dataclass(frozen=True)`` whose fields have simple types
(``int``, ``float``, ``bool``, ``str``, or tuples of those). Overrides from the command
line are parsed against the field's type; an unknown key or a value that does not
parse raises :class:`ConfigError` with a one-line message naming the key and what is
valid.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Iterable, Mapping


class ConfigError(ValueError):
  """A bad experiment name, preset, override key or value. Message is one line."""


_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _parse_scalar(text: str, typ: type, key: str) -> Any:
  text = text.strip()
  if typ is bool:
    word = text.lower()
    if word not in _BOOL_WORDS:
      raise ConfigError(f"--set {key}={text!r}: expected a bool (true/false)")
    return _BOOL_WORDS[word]
  if typ is int:
    try:
      return int(text)
    except ValueError:
      try:
        as_float = float(text)
      except ValueError:
        as_float = None
      if as_float is not None and as_float.is_integer():
        return int(as_float)
      raise ConfigError(f"--set {key}={text!r}: expected an int") from None
  if typ is float:
    try:
      return float(text)
    except ValueError:
      raise ConfigError(f"--set {key}={text!r}: expected a float") from None
  if typ is str:
    return text
  raise ConfigError(f"--set {key}: fields of type {typ} cannot be set from the command line")


def parse_value(text: str, annotation: Any, key: str) -> Any:
  """Parses ``text`` into ``annotation`` (scalar or ``tuple[T, ...]``, comma-separated)."""
  origin = typing.get_origin(annotation)
  if origin is tuple:
    args = typing.get_args(annotation)
    elem = args[0] if args else str
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
      raise ConfigError(f"--set {key}={text!r}: expected a comma-separated list")
    return tuple(_parse_scalar(p, elem, key) for p in parts)
  if origin is typing.Union:  # Optional[T]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if text.strip().lower() == "none":
      return None
    return parse_value(text, args[0], key)
  return _parse_scalar(text, annotation, key)


def apply_overrides(config: Any, overrides: Iterable[str]) -> Any:
  """Returns ``config`` with ``key=value`` overrides applied (a new frozen instance)."""
  if not dataclasses.is_dataclass(config):
    raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
  hints = typing.get_type_hints(type(config))
  names = [f.name for f in dataclasses.fields(config)]
  changes = {}
  for item in overrides:
    if "=" not in item:
      raise ConfigError(f"--set {item!r}: expected key=value")
    key, value = item.split("=", 1)
    key = key.strip()
    if key not in names:
      raise ConfigError(f"--set {key}: unknown key; valid keys: {', '.join(names)}")
    changes[key] = parse_value(value, hints[key], key)
  new = dataclasses.replace(config, **changes)
  validate = getattr(new, "validate", None)
  if callable(validate):
    try:
      validate()
    except ValueError as e:
      raise ConfigError(str(e)) from None
  return new


def config_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
  """Rebuilds a config dataclass from its ``config.json`` form (lists become tuples)."""
  hints = typing.get_type_hints(cls)
  kwargs = {}
  for f in dataclasses.fields(cls):
    if f.name in data:
      v = data[f.name]
      if typing.get_origin(hints[f.name]) is tuple and isinstance(v, list):
        v = tuple(v)
      kwargs[f.name] = v
  return cls(**kwargs)
