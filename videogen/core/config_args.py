"""Parses the `arg` string of a config file's `get_config(arg)`, big_vision style.

`--config configs/world.py:variant=S/2,runlocal=True` calls
`get_config('variant=S/2,runlocal=True')`.
"""
import ast

import ml_collections


def _parse_value(text: str, default):
  """Converts `text` to the type of `default` (strings stay strings)."""
  if isinstance(default, bool):
    if text.lower() not in ('true', 'false', '1', '0'):
      raise ValueError(f'expected true or false, got {text!r}')
    return text.lower() in ('true', '1')
  if isinstance(default, (int, float)):
    return type(default)(ast.literal_eval(text))
  return text


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Returns `defaults` updated from 'k=v,k2=v2'; keys that `defaults` lacks are an error."""
  result = dict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    if not sep:
      raise ValueError(f'config argument {item!r} is not key=value: write e.g. '
                       f'"{next(iter(defaults))}=..."')
    if key not in defaults:
      raise ValueError(f'unknown config argument {key!r}: known are {sorted(defaults)}')
    result[key] = _parse_value(value, defaults[key])
  return ml_collections.ConfigDict(result)
