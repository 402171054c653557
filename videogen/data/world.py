"""The procedural world: shapes and handwritten digits moving with known physics, exact truth.

A scene is drawn from (seed, index, split) and rendered with numpy at any size, length and frame
rate. Geometry is in world units, where the view's shorter side is 1, and time in seconds, so a
scene keeps its physics at any resolution and fps (frame i shows time i / fps). Objects bounce
inside the world box, which is the view plus the distance a panning camera travels.
Shapes: C colour channels, T frames, H height, W width, R sprite resolution, N traits.
"""
import dataclasses
import functools
import itertools
from typing import Any, NamedTuple

import numpy as np

from videogen.data import captions
from videogen.data import digits

PALETTE: dict[str, tuple[int, int, int]] = {
    'red': (235, 35, 35), 'green': (40, 200, 60), 'blue': (40, 90, 255),
    'yellow': (245, 225, 40), 'cyan': (40, 225, 230), 'magenta': (230, 50, 220),
    'white': (250, 250, 250), 'orange': (255, 130, 0)}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    'black': (10, 10, 10), 'charcoal': (50, 50, 54), 'navy': (18, 26, 84),
    'maroon': (84, 18, 30), 'olive': (64, 66, 16), 'indigo': (48, 22, 86)}
OCCLUDER_COLOUR = (128, 128, 128)  # 'gray': in neither the palette nor the backgrounds
KINDS = ('circle', 'square', 'triangle', 'digit')
_DIAGONAL = float(np.sqrt(0.5))
DIRECTIONS: dict[str, tuple[float, float]] = {
    'right': (1.0, 0.0), 'left': (-1.0, 0.0), 'up': (0.0, -1.0), 'down': (0.0, 1.0),
    'up-right': (_DIAGONAL, -_DIAGONAL), 'up-left': (-_DIAGONAL, -_DIAGONAL),
    'down-right': (_DIAGONAL, _DIAGONAL), 'down-left': (-_DIAGONAL, _DIAGONAL)}
MOTIONS = ('still', 'move', 'fall')
SPEEDS = {'slow': 0.3, 'fast': 0.8}  # world units (view short sides) per second
SIZES = {'small': 0.2, 'large': 0.35}  # side of the object's square box, world units
BACKGROUND_STYLES = ('plain', 'gradient', 'texture')
PANS = ('left', 'right', 'up', 'down')
SPLITS = ('train', 'held_out')
MAX_OBJECTS = 5
PAN_SPEED = 0.3  # world units per second
GRAVITY = 6.0  # world units per second squared
RESTITUTION = 0.7  # bounce speed / impact speed of a falling object
OCCLUDER_WIDTH = 1.2  # bar width / crossing object's size: the object hides fully inside it
STATES = ('visible', 'occluded', 'out_of_view')


@dataclasses.dataclass(frozen=True)
class WorldOptions:
  """What scenes may contain and the size they are sampled for; validated on construction."""
  height: int = 32
  width: int = 32
  num_frames: int = 8
  fps: float = 8.0
  min_objects: int = 1
  max_objects: int = 3
  kinds: tuple[str, ...] = KINDS
  colours: tuple[str, ...] = tuple(PALETTE)
  digits: tuple[int, ...] = tuple(range(10))
  motions: tuple[str, ...] = MOTIONS
  speeds: tuple[str, ...] = tuple(SPEEDS)
  directions: tuple[str, ...] = tuple(DIRECTIONS)  # of moving objects
  sizes: tuple[str, ...] = tuple(SIZES)
  backgrounds: tuple[str, ...] = tuple(BACKGROUNDS)
  background_styles: tuple[str, ...] = BACKGROUND_STYLES
  p_occluder: float = 0.2
  p_pan: float = 0.2
  held_out: tuple[str, ...] = ()

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(field.default, tuple):
        if not isinstance(value, (tuple, list)):
          raise ValueError(f'{field.name}={value!r} must be a tuple of values, e.g. ({value!r},).')
        object.__setattr__(self, field.name, tuple(value))
    check_render_size(self.height, self.width, self.num_frames, self.fps)
    if not 1 <= self.min_objects <= self.max_objects <= MAX_OBJECTS:
      raise ValueError(f'min_objects={self.min_objects}, max_objects={self.max_objects}: need '
                       f'1 <= min_objects <= max_objects <= {MAX_OBJECTS}.')
    allowed = {'kinds': KINDS, 'colours': tuple(PALETTE), 'digits': tuple(range(10)),
               'motions': MOTIONS, 'speeds': tuple(SPEEDS), 'directions': tuple(DIRECTIONS),
               'sizes': tuple(SIZES), 'backgrounds': tuple(BACKGROUNDS),
               'background_styles': BACKGROUND_STYLES}
    for name, choices in allowed.items():
      values = getattr(self, name)
      unknown = [v for v in values if v not in choices]
      if unknown or not values:
        raise ValueError(f'{name}={values!r} must be a non-empty selection from {choices}.')
    object.__setattr__(self, 'digits', tuple(int(d) for d in self.digits))
    for name in ('p_occluder', 'p_pan'):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f'{name}={getattr(self, name)} is not a probability; use 0..1.')
    table = _trait_table(self)  # parses held_out, raising on unknown words
    if table.held.all():
      raise ValueError(f'held_out={self.held_out} removes every object these options allow; '
                       'hold out fewer combinations or widen the options.')

  @classmethod
  def from_config(cls, cfg: Any) -> 'WorldOptions':
    """Options from an ml_collections ConfigDict or dict with these field names (lists accepted)."""
    values = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
      raise ValueError(f'Unknown world option(s) {unknown}; the options are {names}.')
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
  """One object: what it is and how it moves; (x, y) is its box centre at t=0 in world units."""
  colour: str
  kind: str
  digit: int | None  # 0-9 for kind 'digit', else None
  variant: int  # which handwritten sample of the digit (0 for shapes)
  size: str
  motion: str
  direction: str | None  # for motion 'move'
  speed: str | None  # for motion 'move'
  x: float
  y: float


@dataclasses.dataclass(frozen=True)
class Occluder:
  """An opaque gray bar across the whole world, in front of every object."""
  orientation: str  # 'vertical' (blocks horizontal travel) or 'horizontal'
  centre: float  # world units along the axis it blocks
  width: float  # world units


@dataclasses.dataclass(frozen=True)
class Scene:
  """Everything needed to render a clip; `view` is the view's (width, height) in world units."""
  view: tuple[float, float]
  duration: float  # seconds covered by the frames the scene was sampled for
  objects: tuple[ObjectSpec, ...]
  background: str
  background_style: str
  background_seed: int
  occluder: Occluder | None
  pan: str | None

  def to_dict(self) -> dict:
    """A JSON-serialisable dict; Scene.from_dict inverts it. Every field is a number, string,
    tuple or a flat dataclass of those, so one level of copying does what dataclasses.asdict's
    recursive deep copy does, at a fraction of its cost (the training pipeline calls this)."""
    fields = lambda obj: {f.name: getattr(obj, f.name)  # noqa: E731
                          for f in dataclasses.fields(obj)}
    return {**fields(self), 'objects': tuple(fields(o) for o in self.objects),
            'occluder': None if self.occluder is None else fields(self.occluder)}

  @classmethod
  def from_dict(cls, data: dict) -> 'Scene':
    occluder = data['occluder']
    return cls(**{**data, 'view': tuple(data['view']),
                  'objects': tuple(ObjectSpec(**o) for o in data['objects']),
                  'occluder': None if occluder is None else Occluder(**occluder)})


def sample_scene(options: WorldOptions, seed: int, index: int, split: str = 'train', *,
                 traits_index: int | None = None) -> Scene:
  """The scene numbered `index` of a split; the same arguments always give the same scene.

  split='train' holds no object matching a held-out phrase; split='held_out' makes the first
  object match one. Occluders appear only with a moving object that crosses them mid-clip.
  traits_index (default: index): where the draws a caption tells of come from (the objects'
  count and traits, the background, the pan, an occluder's axis); the objects' places, digit
  variants and background texture come from index. Scenes of one traits_index differ only in
  what their captions leave unsaid, so one caption (clip_caption with that index) fits all.
  """
  if split not in SPLITS:
    raise ValueError(f'split={split!r} is unknown; use one of {SPLITS}.')
  traits_index = index if traits_index is None else traits_index
  if seed < 0 or index < 0 or traits_index < 0:
    raise ValueError(f'seed={seed}, index={index}, traits_index={traits_index} must all be '
                     '>= 0.')
  table = _trait_table(options)
  if split == 'held_out' and not table.held.any():
    raise ValueError(f'split="held_out" needs held_out phrases that the options can produce; '
                     f'got held_out={options.held_out}.')
  rng = np.random.default_rng((seed, traits_index, SPLITS.index(split)))
  own_rng = None if traits_index == index else np.random.default_rng(
      (seed, index, SPLITS.index(split), 1))

  def unsaid(draw):
    """A draw the caption leaves unsaid: from `rng`, which every scene of a traits_index draws
    alike (so the draws after it agree too), and for a scene sharing another's traits, from its
    own index's stream instead."""
    value = draw(rng)
    return value if own_rng is None else draw(own_rng)

  shorter = min(options.height, options.width)
  view = (options.width / shorter, options.height / shorter)
  duration = (options.num_frames - 1) / options.fps
  count = int(rng.integers(options.min_objects, options.max_objects + 1))
  anything = np.ones_like(table.held)
  pools = [~table.held if split == 'train' else anything for _ in range(count)]
  if split == 'held_out':
    pools[0] = table.held
  pan = PANS[rng.integers(len(PANS))] if duration > 0 and rng.random() < options.p_pan else None
  axis = None  # the axis a crossing object travels along, behind an occluder
  if options.num_frames >= 3 and rng.random() < options.p_occluder:
    axis = {None: int(rng.integers(2)), 'left': 1, 'right': 1, 'up': 0, 'down': 0}[pan]
  picks = [_draw(rng, table, pool) for pool in pools[:-1]]
  cross_time = (options.num_frames - 1) // 2 / options.fps
  crossers = pools[-1] & _crosses(table, axis, view, duration, cross_time)
  if not crossers.any():
    axis = None
  picks.append(_draw(rng, table, crossers if axis is not None else pools[-1]))
  world_wh, camera0 = world_box(view, duration, pan)
  objects, centres = [], []
  for i, pick in enumerate(picks):
    trait, size = table.traits[pick], float(table.size[pick])
    low = np.array(camera0) + size / 2
    high = low + np.array(view) - size
    if trait.motion == 'fall':
      high[1] = low[1] + 0.35 * (view[1] - size)
    for dim, velocity in enumerate(table.velocity[pick]):
      # Room ahead: the crosser never meets a wall on its crossing axis; others travel at
      # least half the clip (or half the view) before their first bounce.
      travel = abs(velocity) * duration
      if not (axis == dim and i == len(picks) - 1):
        travel = min(travel / 2, (high[dim] - low[dim]) / 2)
      low[dim] += travel * (velocity < 0)
      high[dim] -= travel * (velocity > 0)
    candidates = unsaid(lambda r: r.uniform(low, high, size=(8, 2)))
    if centres:  # spread objects out: take the candidate farthest from those placed
      gaps = np.linalg.norm(candidates[:, None] - np.array(centres)[None], axis=-1).min(1)
      candidates = candidates[np.argmax(gaps)][None]
    x, y = (float(v) for v in candidates[0])
    centres.append((x, y))
    variant = (unsaid(lambda r: int(r.integers(digits.variant_count(trait.digit))))
               if trait.kind == 'digit' else 0)
    objects.append(ObjectSpec(**trait._asdict(), variant=variant, x=x, y=y))
  occluder = None
  if axis is not None:
    crosser_at = centres[-1][axis] + table.velocity[picks[-1], axis] * cross_time
    occluder = Occluder(('vertical', 'horizontal')[axis], float(crosser_at),
                        OCCLUDER_WIDTH * float(table.size[picks[-1]]))
  return Scene(
      view=view, duration=duration, objects=tuple(objects),
      background=options.backgrounds[rng.integers(len(options.backgrounds))],
      background_style=options.background_styles[rng.integers(len(options.background_styles))],
      background_seed=unsaid(lambda r: int(r.integers(2**31))), occluder=occluder, pan=pan)


def caption(scene: Scene, seed: int) -> str:
  """A natural-English caption of `scene`; the seed picks among several phrasings."""
  return captions.describe(scene, np.random.default_rng(seed))


def clip_caption(scene: Scene, seed: int, index: int) -> str:
  """The caption of clip `index` of a seed, phrasing drawn from (seed, index): what the training
  pipeline reads (index: the clip's traits_index) and what rendered previews record, so both say
  the same for the same clip."""
  return caption(scene, int(np.random.SeedSequence((seed, index)).generate_state(1)[0]))


def parse_prompt(text: str) -> list[dict]:
  """Best-effort inverse of `caption`: per object mentioned, its colour, kind, digit, motion,
  direction and speed (None where the text does not say)."""
  return captions.parse(text, tuple(PALETTE))


# ---------------------------------------------------------------- what objects may be


class Traits(NamedTuple):
  """An object's identity and motion, without its position."""
  colour: str
  kind: str
  digit: int | None
  size: str
  motion: str
  direction: str | None
  speed: str | None


class _TraitTable(NamedTuple):
  traits: tuple[Traits, ...]
  weight: np.ndarray  # [N] probability under independent uniform draws of each attribute
  held: np.ndarray  # [N] bool: matches a held-out phrase
  size: np.ndarray  # [N] world units
  velocity: np.ndarray  # [N, 2] world units per second (zero unless motion is 'move')


@functools.lru_cache(maxsize=64)
def _trait_table(options: WorldOptions) -> _TraitTable:
  """Every object the options allow, with sampling weights and held-out marks."""
  unique = lambda values: tuple(dict.fromkeys(values))  # noqa: E731
  colours, kinds, numbers = unique(options.colours), unique(options.kinds), unique(options.digits)
  motions, speeds, sizes = unique(options.motions), unique(options.speeds), unique(options.sizes)
  directions = unique(options.directions)
  identities = [(k, None, 1 / len(kinds)) for k in kinds if k != 'digit']
  if 'digit' in kinds:
    identities += [('digit', d, 1 / len(kinds) / len(numbers)) for d in numbers]
  motions_weighted = [(m, None, None, 1 / len(motions)) for m in motions if m != 'move']
  if 'move' in motions:
    motions_weighted += [('move', d, s, 1 / len(motions) / len(directions) / len(speeds))
                         for d in directions for s in speeds]
  traits, weight = [], []
  for colour, (kind, digit, p_kind), size, (motion, direction, speed, p_motion) in (
      itertools.product(colours, identities, sizes, motions_weighted)):
    traits.append(Traits(colour, kind, digit, size, motion, direction, speed))
    weight.append(p_kind * p_motion / len(colours) / len(sizes))
  predicates = [_held_out_predicate(text) for text in options.held_out]
  held = np.array([any(all(getattr(t, k) == v for k, v in p.items()) for p in predicates)
                   for t in traits])
  velocity = np.array([np.array(DIRECTIONS[t.direction]) * SPEEDS[t.speed]
                       if t.motion == 'move' else (0.0, 0.0) for t in traits])
  return _TraitTable(tuple(traits), np.array(weight), held,
                     np.array([SIZES[t.size] for t in traits]), velocity)


def _held_out_vocabulary() -> dict[str, dict[str, Any]]:
  words = {c: {'colour': c} for c in PALETTE}
  words.update({k: {'kind': k} for k in KINDS})
  words.update({str(d): {'kind': 'digit', 'digit': d} for d in range(10)})
  words.update({'still': {'motion': 'still'}, 'moving': {'motion': 'move'},
                'falling': {'motion': 'fall'}})
  words.update({d: {'motion': 'move', 'direction': d} for d in DIRECTIONS})
  words.update({s: {'motion': 'move', 'speed': s} for s in SPEEDS})
  words.update({s: {'size': s} for s in SIZES})
  return words


def _held_out_predicate(text: str) -> dict[str, Any]:
  """'green triangle', '7 moving up', 'blue digit' -> the trait values an object must all have."""
  vocabulary = _held_out_vocabulary()
  predicate: dict[str, Any] = {}
  for word in text.lower().split():
    if word not in vocabulary:
      raise ValueError(f'held_out phrase {text!r} has unknown word {word!r}; use words from '
                       f'{sorted(vocabulary)}.')
    for key, value in vocabulary[word].items():
      if predicate.setdefault(key, value) != value:
        raise ValueError(f'held_out phrase {text!r} asks for two values of {key}: '
                         f'{predicate[key]!r} and {value!r}; give one.')
  if not predicate:
    raise ValueError(f'held_out phrase {text!r} is empty; name a colour, kind, digit or motion.')
  return predicate


def _draw(rng: np.random.Generator, table: _TraitTable, allowed: np.ndarray) -> int:
  """A trait index among `allowed`, as likely as independent attribute draws make it."""
  weight = np.where(allowed, table.weight, 0.0)
  return int(rng.choice(len(weight), p=weight / weight.sum()))


def _crosses(table: _TraitTable, axis: int | None, view: tuple[float, float], duration: float,
             cross_time: float) -> np.ndarray:
  """[N] bool: traits that can travel along `axis` from clear of a bar, fully behind it at
  `cross_time`, to clear on the other side at the end, without touching a wall."""
  if axis is None:
    return np.zeros_like(table.held)
  speed = np.abs(table.velocity[:, axis])
  clear = (OCCLUDER_WIDTH + 1) / 2 * table.size
  return (speed * cross_time >= clear) & (speed * duration <= view[axis] - table.size)


# ---------------------------------------------------------------- motion


def world_box(view: tuple[float, float], duration: float,
               pan: str | None) -> tuple[np.ndarray, tuple[float, float]]:
  """World (width, height) and the camera's start: the view grows by the pan's travel."""
  travel = PAN_SPEED * duration if pan else 0.0
  world_wh = np.array(view) + travel * np.abs(DIRECTIONS[pan] if pan else (0.0, 0.0))
  camera0 = {None: (0.0, 0.0), 'right': (0.0, 0.0), 'down': (0.0, 0.0),
             'left': (travel, 0.0), 'up': (0.0, travel)}[pan]
  return world_wh, camera0


def box_centres(obj: ObjectSpec, world_wh: np.ndarray, times: np.ndarray) -> np.ndarray:
  """[T, 2] the object's box centre in world units at `times`."""
  size = SIZES[obj.size]
  low, high = size / 2, world_wh - size / 2
  centres = np.tile(np.array([obj.x, obj.y]), (len(times), 1))
  if obj.motion == 'move':
    velocity = np.array(DIRECTIONS[obj.direction]) * SPEEDS[obj.speed]
    span = high - low
    unfolded = np.mod(centres - low + times[:, None] * velocity, 2 * span)
    centres = low + np.where(unfolded <= span, unfolded, 2 * span - unfolded)  # wall bounces
  elif obj.motion == 'fall':
    centres[:, 1] = _fall(obj.y, float(high[1]), times)
  return centres


def _fall(y0: float, floor: float, times: np.ndarray) -> np.ndarray:
  """[T] height (y down) of a body dropped from rest at y0 that bounces on `floor`."""
  y = np.full_like(times, floor)
  hit = np.sqrt(2 * max(floor - y0, 0.0) / GRAVITY)
  falling = times < hit
  y[falling] = y0 + 0.5 * GRAVITY * times[falling] ** 2
  speed = GRAVITY * hit
  while hit <= times[-1] and speed > 1e-3:
    speed *= RESTITUTION
    flight = 2 * speed / GRAVITY
    airborne = (times >= hit) & (times < hit + flight)
    tau = times[airborne] - hit
    y[airborne] = floor - speed * tau + 0.5 * GRAVITY * tau ** 2
    hit += flight
  return y


# ---------------------------------------------------------------- pixels


def check_render_size(height: int, width: int, num_frames: int, fps: float) -> None:
  for name, value in (('height', height), ('width', width), ('num_frames', num_frames)):
    if not isinstance(value, (int, np.integer)):
      raise ValueError(f'{name}={value!r} must be an integer.')
  if height < 16 or width < 16:
    raise ValueError(f'height={height}, width={width}: the world renders at 16 pixels or more.')
  if num_frames < 1:
    raise ValueError(f'num_frames={num_frames}: need at least 1 (one frame is an image).')
  if not fps > 0:
    raise ValueError(f'fps={fps}: frames per second must be > 0.')
