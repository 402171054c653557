"""The package's layers hold: no import cycle, and no package imports one above it.

Read from the source (ast), every import statement, at the top or inside a function. The order
is the README's layout table: a package may import itself and those before it.
"""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'videogen'
LAYERS = ('core', 'parallel', 'models', 'data', 'diffusion', 'runtime', 'inference', 'convert',
          'train', 'evals', 'bench', 'jobs', 'studio')


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports(path: pathlib.Path, modules: set[str]) -> set[str]:
  """The videogen modules `path` imports (a name imported from a package counts as its module
  when it is one)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names if alias.name.startswith('videogen')}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('videogen'):
      for alias in node.names:
        full = f'{node.module}.{alias.name}'
        found.add(full if full in modules else node.module)
  return found


def import_graph() -> dict[str, set[str]]:
  paths = {module_name(p): p for p in PACKAGE.rglob('*.py')}
  return {name: imports(path, set(paths)) for name, path in paths.items()}


def layer(module: str) -> int:
  parts = module.split('.')
  if len(parts) < 3:  # videogen itself and its package folders' __init__: below everything
    return -1 if len(parts) == 1 or parts[1] in LAYERS else len(LAYERS)
  if parts[1] not in LAYERS:
    raise AssertionError(f'{module} is in no layer: add its package to LAYERS (and the README).')
  return LAYERS.index(parts[1])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import cycle (its modules in order, the first repeated at the end), or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 'open':
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state and (cycle := visit(nxt)):
        return cycle
    state[node] = 'done'
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


def test_no_import_cycle():
  assert find_cycle(import_graph()) is None, ' -> '.join(find_cycle(import_graph()))


def test_no_package_imports_a_layer_above_it():
  upward = [f'{module} imports {target}' for module, targets in import_graph().items()
            for target in targets if layer(target) > layer(module)]
  assert not upward, '\n'.join(upward)


def test_the_checks_catch_what_they_should():
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
  assert find_cycle({'a': {'b'}, 'b': set()}) is None
  assert layer('videogen.core.media') < layer('videogen.train.loop')
  with pytest.raises(AssertionError, match='is in no layer'):
    layer('videogen.misc.thing')


@pytest.mark.parametrize('name', ['generate', 'vae', 'prompting'])
def test_moved_public_modules_keep_an_alias_for_one_release(name):
  import importlib  # pylint: disable=g-import-not-at-top
  with pytest.warns(DeprecationWarning, match=f'videogen.inference.{name}'):
    alias = importlib.reload(importlib.import_module(f'videogen.{name}'))
  moved = importlib.import_module(f'videogen.inference.{name}')
  public = [n for n in dir(moved) if not n.startswith('_') and callable(getattr(moved, n))]
  assert public and all(getattr(alias, n) is getattr(moved, n) for n in public)


def test_the_main_job_finds_the_shipped_reference():
  from videogen.jobs import main_job  # pylint: disable=g-import-not-at-top
  assert (main_job.REFERENCE / 'config.json').is_file(), main_job.REFERENCE
