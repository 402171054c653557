"""DiT sizes decoded from a name: "<size>/<spatial patch>" (the DiT family), a Wan 2.1 shape, or
an explicit shape "w<width>-d<depth>-h<heads>-m<MLP hidden>/<patch>" (e.g. converted weights of
a size no name covers)."""
import re

# size: (width, depth, heads, MLP hidden); the DiT family uses MLP ratio 4 (DiT, Peebles & Xie).
DIT_FAMILY = {
    'N': (64, 4, 2, 256),  # nano: the small end of the CPU scaling study
    'T': (128, 4, 4, 512),  # tiny: CPU tests, smoke runs and the CPU demo model
    'XS': (192, 4, 6, 768),  # the large end of the CPU scaling study (head width 32, as N, T)
    'S': (384, 12, 6, 1536),
    'B': (768, 12, 12, 3072),
    'L': (1024, 24, 16, 4096),
    'XL': (1152, 28, 16, 4608),
}
# Wan 2.1 text-to-video transformers; both use patch (1, 2, 2).
WAN = {
    '1.3B': (1536, 30, 12, 8960),
    '14B': (5120, 40, 40, 13824),
}
KNOWN = tuple(f'{size}/2' for size in DIT_FAMILY) + tuple(WAN)
_SHAPE = re.compile(r'w(\d+)-d(\d+)-h(\d+)-m(\d+)')


def shape_name(dim: int, depth: int, heads: int, mlp_dim: int, patch: int = 2) -> str:
  """The explicit name `decode` reads back as this shape, e.g. "w24-d2-h2-m48/2"."""
  return f'w{dim}-d{depth}-h{heads}-m{mlp_dim}/{patch}'


def decode(variant: str) -> dict:
  """{'dim', 'depth', 'heads', 'mlp_dim', 'patch_size'} for a name like "B/2", "S/4" or "1.3B"."""
  if variant in WAN:
    shape, patch = WAN[variant], 2
  else:
    size, _, patch = variant.partition('/')
    explicit = _SHAPE.fullmatch(size)
    if (size not in DIT_FAMILY and not explicit) or not patch.isdigit() or int(patch) < 1:
      raise ValueError(f'DiT variant {variant!r} is unknown: use one of {", ".join(KNOWN)} '
                       '(any spatial patch works after the slash, e.g. "S/4"), or a shape like '
                       f'{shape_name(384, 12, 6, 1536)!r}.')
    shape = tuple(map(int, explicit.groups())) if explicit else DIT_FAMILY[size]
    patch = int(patch)
  dim, depth, heads, mlp_dim = shape
  return dict(dim=dim, depth=depth, heads=heads, mlp_dim=mlp_dim, patch_size=(1, patch, patch))
