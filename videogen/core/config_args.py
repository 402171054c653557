"""Config files on the command line: the `arg` of `get_config(arg)` and `--config.a.b=` overrides.

`--config configs/world.py:variant=S/2,runlocal=True` calls
`get_config('variant=S/2,runlocal=True')` (big_vision style). `define_config_file` defines the
`--config` flag as ml_collections does, but first checks every `--config.a.b` override against the
config it names, so a typo at any depth is one sentence naming the key and the nearest valid ones.
"""
import ast
import difflib
import importlib.util
import pathlib
import re
import sys

from absl import flags
import ml_collections
from ml_collections import config_flags

_NEAREST = 3  # valid keys suggested for a mistyped one


def sibling_config(config_file: str, name: str, arg: str | None = None):
  """get_config(arg) of the config file `name` beside `config_file` (a config's __file__),
  loaded by path as config files are (runners do not put configs/ on the import path)."""
  path = pathlib.Path(config_file).with_name(name)
  spec = importlib.util.spec_from_file_location(f'_sibling_{path.stem}_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def nearest_keys(key: str, keys, count: int = _NEAREST) -> list[str]:
  """The `count` valid `keys` closest in spelling to `key`, closest first."""
  return difflib.get_close_matches(key, sorted(keys), n=count, cutoff=0.0)


def _parse_value(key: str, text: str, default):
  """Converts `text` to the type of `default` (strings stay strings)."""
  if isinstance(default, bool):
    if text.lower() not in ('true', 'false', '1', '0'):
      raise ValueError(f'config argument {key}={text!r} is not a boolean: write {key}=true or '
                       f'{key}=false.')
    return text.lower() in ('true', '1')
  if isinstance(default, (int, float)):
    return type(default)(ast.literal_eval(text))
  return text


def _example(item: str, defaults) -> str:
  """A key=value the user may have meant by `item`."""
  if item not in defaults:
    return f'{next(iter(defaults))}=...'
  return f'{item}=true' if isinstance(defaults[item], bool) else f'{item}=...'


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Returns `defaults` updated from 'k=v,k2=v2'; keys that `defaults` lacks are an error."""
  result = dict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    if not sep:
      raise ValueError(f'config argument {item!r} is not key=value: write e.g. '
                       f'"{_example(item, defaults)}".')
    if key not in defaults:
      known = nearest_keys(key, defaults, count=len(defaults))
      raise ValueError(f'unknown config argument {key!r}: use one of {", ".join(known)} (nearest '
                       f'first), e.g. {known[0]}=...')
    result[key] = _parse_value(key, value, defaults[key])
  return ml_collections.ConfigDict(result)


def check_override(config, path: str, name: str = 'config') -> None:
  """Raises one sentence when the override `--{name}.{path}` names a key `config` lacks."""
  node, walked, keys = config, name, path.split('.')
  for depth, key in enumerate(keys):
    key = key.split('[')[0]  # an indexed field, e.g. tasks[0]
    if not isinstance(node, (ml_collections.ConfigDict, dict)):
      raise ValueError(f'--{name}.{path}: {walked} is a value ({type(node).__name__}), not a '
                       f'group of keys: set it whole with --{walked}=...')
    if key not in node:
      nearest = nearest_keys(key, node.keys())
      fixed = '.'.join([walked, nearest[0], *keys[depth + 1:]])
      raise ValueError(f'{walked} has no key {key!r} (in --{name}.{path}): use one of its '
                       f'nearest valid keys, {", ".join(nearest)}, e.g. --{fixed}.')
    node, walked = node[key], f'{walked}.{key}'


def override_paths(argv, name: str = 'config') -> list[str]:
  """The dotted paths of the `--{name}.a.b[=v]` overrides in `argv`."""
  pattern = re.compile(rf'^--?(?:no)?{re.escape(name)}\.([^=]+)')
  return [match.group(1) for match in map(pattern.match, argv) if match]


def config_spec(argv, name: str, default: str) -> str:
  """The `path[:arg]` that `--{name}` takes in `argv` (the last one given), else `default`."""
  spec = default
  for i, arg in enumerate(argv):
    if re.match(rf'^--?{re.escape(name)}=', arg):
      spec = arg.split('=', 1)[1]
    elif re.match(rf'^--?{re.escape(name)}$', arg) and i + 1 < len(argv):
      spec = argv[i + 1]
  return spec


def define_config_file(name: str, default: str, help_string: str, *, lock_config: bool = True,
                       flag_values=flags.FLAGS, sys_argv=None):
  """ml_collections' `DEFINE_config_file`, after checking the overrides in `sys_argv` (default:
  sys.argv): a key the config lacks exits with one sentence, as absl does for a bad flag."""
  argv = flag_values.read_flags_from_files(sys.argv if sys_argv is None else sys_argv,
                                           force_gnu=False)
  paths = override_paths(argv, name)
  if paths:
    config = _load_quietly(config_spec(argv, name, default))
    for path in paths if config is not None else ():
      try:
        check_override(config, path, name)
      except ValueError as error:
        raise SystemExit(f'FATAL Flags parsing error: {error}') from None
  return config_flags.DEFINE_config_file(name, default, help_string, flag_values=flag_values,
                                         lock_config=lock_config, sys_argv=sys_argv)


def _load_quietly(spec: str):
  """The config `spec` ('path[:arg]') names, or None when it does not load (ml_collections then
  says why)."""
  path, sep, arg = spec.partition(':')
  try:
    module_spec = importlib.util.spec_from_file_location('_checked_config', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if sep else module.get_config()
  except Exception:  # pylint: disable=broad-exception-caught
    return None
