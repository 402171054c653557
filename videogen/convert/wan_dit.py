"""Wan 2.1 text-to-video transformer weights -> this project's DiT params (videogen/models/dit.py).

Two layouts are read: Diffusers' (`transformer/` of a `*-Diffusers` release:
`condition_embedder.*`, `blocks.N.attn1.to_q`, ...) and the original release's
(`time_embedding.0`, `blocks.N.self_attn.q`, ...), which is renamed to Diffusers' first. The DiT
follows Wan's layout module for module, so each tensor maps to one parameter: a torch Linear
[out, in] is a Dense kernel [in, out]; the Conv3d patch embedding [E, C, pt, ph, pw] is the Dense
kernel over patchified values, ordered (pt, ph, pw, c) as videogen/core/patches.py flattens them;
Diffusers' block `norm2` (the cross-attention norm, the only affine one) is `norm3` here, as in
Wan's own code; the [1, 6, E] and [1, 2, E] modulation tables lose their leading 1.

`convert` builds every parameter straight into its sharding with `jax.make_array_from_callback`:
each device's shard is cut from the tensors of the layers it holds, read one tensor at a time, so
the host never holds more than one layer's tensor (plus the shards it is filling), whatever the
model's size.
"""
from collections.abc import Callable, Mapping
import dataclasses

import einops
from flax import traverse_util
import jax
import numpy as np

from videogen.convert import checkpoint_files
from videogen.models import dit_sizes

# Original release name part -> Diffusers', applied in this order (as
# diffusers.loaders.single_file_utils.convert_wan_transformer_to_diffusers does for T2V models).
ORIGINAL_TO_DIFFUSERS = (
    ('time_embedding.0.', 'condition_embedder.time_embedder.linear_1.'),
    ('time_embedding.2.', 'condition_embedder.time_embedder.linear_2.'),
    ('text_embedding.0.', 'condition_embedder.text_embedder.linear_1.'),
    ('text_embedding.2.', 'condition_embedder.text_embedder.linear_2.'),
    ('time_projection.1.', 'condition_embedder.time_proj.'),
    ('head.modulation', 'scale_shift_table'), ('head.head.', 'proj_out.'),
    ('.modulation', '.scale_shift_table'),
    ('.self_attn.', '.attn1.'), ('.cross_attn.', '.attn2.'),
    ('.o.', '.to_out.0.'), ('.q.', '.to_q.'), ('.k.', '.to_k.'), ('.v.', '.to_v.'),
    ('.norm3.', '.norm2.'), ('.ffn.0.', '.ffn.net.0.proj.'), ('.ffn.2.', '.ffn.net.2.'),
)
# Our block module -> Diffusers' (blocks.N.<name>).
_BLOCK_MODULES = {'self_attn': 'attn1', 'cross_attn': 'attn2', 'ffn_in': 'ffn.net.0.proj',
                  'ffn_out': 'ffn.net.2', 'norm3': 'norm2'}
_ATTENTION = {'q': 'to_q', 'k': 'to_k', 'v': 'to_v', 'o': 'to_out.0', 'norm_q': 'norm_q',
              'norm_k': 'norm_k'}
_TOP_MODULES = {
    'patch_embedding': 'patch_embedding',
    'time_in': 'condition_embedder.time_embedder.linear_1',
    'time_out': 'condition_embedder.time_embedder.linear_2',
    'time_projection': 'condition_embedder.time_proj',
    'text_in': 'condition_embedder.text_embedder.linear_1',
    'text_out': 'condition_embedder.text_embedder.linear_2',
    'head': 'proj_out',
}


def is_original_layout(names) -> bool:
  """Whether tensor `names` are the original Wan release's (else Diffusers')."""
  return any(name.startswith(('time_embedding.', 'model.diffusion_model.')) for name in names)


def diffusers_name(original: str) -> str:
  """An original-release tensor name -> its Diffusers name."""
  name = original.removeprefix('model.diffusion_model.')
  for old, new in ORIGINAL_TO_DIFFUSERS:
    name = name.replace(old, new)
  return name


def config_fields(config: Mapping) -> dict:
  """DiTConfig shape fields from a text-to-video transformer's config.json: the Diffusers
  release's (WanTransformer3DModel) or the original release's (WanModel: dim, num_heads, ...)."""
  if 'num_heads' in config:  # the original release's fields, renamed
    if config.get('model_type', 't2v') != 't2v':
      raise ValueError(f"model_type {config['model_type']!r} is not a text-to-video Wan model: "
                       'convert Wan2.1-T2V-1.3B or -14B.')
    config = dict(num_attention_heads=config['num_heads'],
                  attention_head_dim=config['dim'] // config['num_heads'],
                  num_layers=config['num_layers'], ffn_dim=config['ffn_dim'],
                  patch_size=config.get('patch_size', (1, 2, 2)), in_channels=config['in_dim'],
                  out_channels=config['out_dim'], text_dim=config.get('text_dim', 4096),
                  freq_dim=config.get('freq_dim', 256))
  if config.get('image_dim') or config.get('added_kv_proj_dim'):
    raise ValueError('This transformer takes image embeddings (an image-to-video Wan model, '
                     f'image_dim={config.get("image_dim")}): convert a text-to-video one '
                     '(Wan2.1-T2V-1.3B or -14B).')
  if config.get('qk_norm', 'rms_norm_across_heads') != 'rms_norm_across_heads' or not config.get(
      'cross_attn_norm', True):
    raise ValueError(f'qk_norm={config.get("qk_norm")!r} and cross_attn_norm='
                     f'{config.get("cross_attn_norm")!r} are not Wan 2.1\'s '
                     '(rms_norm_across_heads, true): this DiT cannot express them.')
  heads, head_dim = config['num_attention_heads'], config['attention_head_dim']
  return dict(dim=heads * head_dim, depth=config['num_layers'], heads=heads,
              mlp_dim=config['ffn_dim'], patch_size=tuple(config['patch_size']),
              in_channels=config['in_channels'],
              out_channels=config.get('out_channels') or config['in_channels'],
              text_dim=config['text_dim'], freq_dim=config.get('freq_dim', 256))


def variant_name(fields: Mapping) -> str:
  """'1.3B' or '14B' when the shape is one of Wan's, else dit_sizes' explicit shape name."""
  shape = (fields['dim'], fields['depth'], fields['heads'], fields['mlp_dim'])
  for name, wan_shape in dit_sizes.WAN.items():
    if shape == wan_shape:
      return name
  return dit_sizes.shape_name(*shape, patch=fields.get('patch_size', (1, 2, 2))[1])


def _tensor_name(path: tuple[str, ...], layer: int | None) -> tuple[str, Callable]:
  """(Diffusers tensor name, torch tensor -> our value) for our param `path`."""
  *modules, leaf = path
  torch_leaf = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias'}.get(leaf)
  if modules == ['blocks'] or modules == [] and leaf == 'head_modulation':
    prefix = '' if layer is None else f'blocks.{layer}.'
    return prefix + 'scale_shift_table', lambda x: x[0]
  if modules[0] == 'blocks':
    inner = _BLOCK_MODULES[modules[1]]
    if modules[1] in ('self_attn', 'cross_attn'):
      inner += '.' + _ATTENTION[modules[2]]
    module = f'blocks.{layer}.{inner}'
  else:
    module = _TOP_MODULES[modules[0]]
  if modules[0] == 'patch_embedding' and leaf == 'kernel':
    return f'{module}.weight', lambda x: einops.rearrange(x, 'e c t h w -> (t h w c) e')
  return f'{module}.{torch_leaf}', (lambda x: x.T) if leaf == 'kernel' else (lambda x: x)


@dataclasses.dataclass
class Source:
  """A checkpoint's tensors under their Diffusers names."""
  files: checkpoint_files.CheckpointFiles

  def __post_init__(self):
    keys = self.files.keys()
    self._names = ({diffusers_name(k): k for k in keys} if is_original_layout(keys)
                   else {k: k for k in keys})

  def names(self) -> set[str]:
    return set(self._names)

  def shape(self, name: str) -> tuple[int, ...]:
    return self.files.shape(self._stored_name(name))

  def get(self, name: str) -> np.ndarray:
    return self.files.get(self._stored_name(name))

  def _stored_name(self, name: str) -> str:
    if name not in self._names:
      raise KeyError(f'Tensor {name} is missing from {self.files.path}: is every shard there, '
                     'and is it a Wan 2.1 text-to-video transformer?')
    return self._names[name]


def plan(abstract_params, scan_layers: bool) -> dict:
  """{our param path: [(Diffusers name, transform), one per stacked layer or a single one]}."""
  out = {}
  for path, spec in traverse_util.flatten_dict(abstract_params).items():
    stacked = scan_layers and path[0] == 'blocks'
    if stacked:
      out[path] = [_tensor_name(path, i) for i in range(spec.shape[0])]
    elif path[0].startswith('blocks_'):
      out[path] = [_tensor_name(('blocks',) + path[1:], int(path[0].split('_')[1]))]
    else:
      out[path] = [_tensor_name(path, None)]
  return out


def check(source: Source, abstract_params, scan_layers: bool, allow_unused: bool = False) -> None:
  """Raises one sentence for a missing tensor, a shape that is not the model's, or (unless
  allow_unused) tensors the model does not use, before anything is converted."""
  used = set()
  specs = traverse_util.flatten_dict(abstract_params)
  for path, sources in plan(abstract_params, scan_layers).items():
    want = specs[path].shape[1:] if scan_layers and path[0] == 'blocks' else specs[path].shape
    for name, transform in sources:
      stored = source.shape(name)
      have = jax.eval_shape(transform, jax.ShapeDtypeStruct(stored, np.float32)).shape
      if have != tuple(want):
        raise ValueError(f'Tensor {name} has shape {stored}, but the named variant '
                         f'needs {tuple(want)} for {"/".join(path)}: convert with the '
                         "checkpoint's own config.json.")
      used.add(name)
  unused = sorted(source.names() - used)
  if unused and not allow_unused:
    raise ValueError(f'{len(unused)} tensor(s) of {source.files.path} have no place in the model '
                     f'({", ".join(unused[:8])}{" ..." if len(unused) > 8 else ""}): pass '
                     '--allow_unused to drop them, if that is intended.')


def convert(source: Source, abstract_params, shardings, scan_layers: bool) -> dict:
  """Params like `abstract_params`, each made on its `shardings` leaf from the shards' slices."""
  flat_specs = traverse_util.flatten_dict(abstract_params)
  flat_shardings = traverse_util.flatten_dict(shardings)
  out = {}
  for path, sources in plan(abstract_params, scan_layers).items():
    spec = flat_specs[path]
    stacked = scan_layers and path[0] == 'blocks'

    def shard(index, sources=sources, stacked=stacked, out_dtype=spec.dtype):
      if not stacked:
        name, transform = sources[0]
        return np.asarray(transform(source.get(name))[index], out_dtype)
      layers = range(len(sources))[index[0]]
      return np.stack([np.asarray(sources[i][1](source.get(sources[i][0]))[index[1:]], out_dtype)
                       for i in layers])

    out[path] = jax.make_array_from_callback(spec.shape, flat_shardings[path], shard)
  return traverse_util.unflatten_dict(out)

