"""English captions for world scenes, phrased several ways by a seed, and their best-effort parser.

Every object clause holds its colour word and, for moving objects, a direction phrase, so `parse`
recovers colour, kind, digit, motion and direction (tests and the adherence metric rely on it).
Background names never contain an object colour word, and camera, background and occluder
phrases never name an object colour, so the parser keys each object on its colour word.
Scenes and objects are data/world.py's Scene and ObjectSpec (which imports this module).
"""
import re
from typing import Sequence

import numpy as np

KIND_WORDS = {'circle': ('circle', 'disc', 'ball'), 'square': ('square', 'box', 'block'),
              'triangle': ('triangle',)}
DIGIT_FORMS = ('{}', 'digit {}', 'number {}', 'handwritten {}')
SIZE_WORDS = {'small': ('small', 'little'), 'large': ('large', 'big')}
MOVE_VERBS = (('drifts', 'drifting'), ('moves', 'moving'), ('glides', 'gliding'),
              ('slides', 'sliding'), ('travels', 'travelling'))
SPEED_WORDS = {'slow': ('slowly', 'gently', 'leisurely'), 'fast': ('quickly', 'rapidly', 'swiftly')}
DIRECTION_PHRASES = {
    'right': ('to the right', 'rightward', 'toward the right'),
    'left': ('to the left', 'leftward', 'toward the left'),
    'up': ('upward', 'up', 'toward the top'),
    'down': ('downward', 'down', 'toward the bottom'),
    'up-right': ('up and to the right', 'diagonally up and right', 'toward the upper right'),
    'up-left': ('up and to the left', 'diagonally up and left', 'toward the upper left'),
    'down-right': ('down and to the right', 'diagonally down and right',
                   'toward the lower right'),
    'down-left': ('down and to the left', 'diagonally down and left', 'toward the lower left'),
}
STILL_PHRASES = (('stays still', 'staying still'), ('sits still', 'sitting still'),
                 ('rests in place', 'resting in place'), ('does not move', 'not moving'))
FALL_PHRASES = (('falls and bounces', 'falling and bouncing'),
                ('drops and bounces', 'dropping and bouncing'),
                ('falls under gravity and bounces', 'falling under gravity and bouncing'))
STYLE_WORDS = {'plain': ('', 'plain'), 'gradient': ('softly graded', 'gradient'),
               'texture': ('textured', 'mottled')}
OCCLUDER_SENTENCES = ('A {} gray bar stands in front, and things pass behind it.',
                      'A {} gray bar hides whatever passes behind it.',
                      'Part of the view is blocked by a {} gray bar.')

# Parsing accepts the phrases above plus plain forms a person might type.
_DIRECTION_ALIASES = {'right': ('right',), 'left': ('left',),
                      'up-right': ('up-right', 'up and right'),
                      'up-left': ('up-left', 'up and left'),
                      'down-right': ('down-right', 'down and right'),
                      'down-left': ('down-left', 'down and left')}
_FALL_WORDS = ('falls', 'falling', 'drops', 'dropping', 'fall', 'drop')
_STILL_WORDS = ('still', 'motionless', 'stationary', 'in place', 'not move', 'not moving')


def describe(scene, rng: np.random.Generator) -> str:
  """A caption for `scene`: clause order, sentence shape and synonyms are drawn from `rng`."""
  order = rng.permutation(len(scene.objects))
  objects = [scene.objects[i] for i in order]
  background = _background_phrase(scene, rng)
  shape = rng.choice([0, 1, 2, 3] if len(objects) > 1 else [0, 2, 3])
  if shape == 0:  # "A ... on a navy background while B ... and C ..."
    clauses = [_clause(o, rng, gerund=False) for o in objects]
    clauses[0] += f' on {background}'
    sentences = [_join(clauses, rng.choice([' while ', ' and ', ', while ']))]
  elif shape == 1:  # "While A ..., B ....  It all happens on a navy background."
    clauses = [_clause(o, rng, gerund=False) for o in objects]
    sentences = [f'while {_join(clauses[:-1], " and ")}, {clauses[-1]}',
                 f'it all happens on {background}']
  elif shape == 2:  # "On a navy background, A .... B ...."
    clauses = [_clause(o, rng, gerund=False) for o in objects]
    sentences = [f'on {background}, {clauses[0]}', *clauses[1:]]
  else:  # "There is A moving ... and B falling ... on a navy background."
    clauses = [_clause(o, rng, gerund=True) for o in objects]
    lead = rng.choice(['there is', 'we see', 'the video shows'])
    sentences = [f'{lead} {_join(clauses, " and ")} on {background}']
  if scene.occluder is not None:
    template = OCCLUDER_SENTENCES[rng.integers(len(OCCLUDER_SENTENCES))]
    sentences.append(template.format(scene.occluder.orientation))
  if scene.pan is not None:
    pan = f'The camera pans {scene.pan}.'
    sentences = [pan, *sentences] if rng.random() < 0.3 else [*sentences, pan]
  return ' '.join(_sentence(s) for s in sentences)


def parse(text: str, colours: Sequence[str]) -> list[dict]:
  """Objects a caption or prompt mentions, keyed on colour words, in the order they appear.

  Each is {'colour', 'kind', 'digit', 'motion', 'direction', 'speed'}; what the text does not
  say is None. A clause runs from its colour word to the next colour word or sentence end.
  """
  colour_re = re.compile(r'\b(' + '|'.join(map(re.escape, colours)) + r')\b')
  objects = []
  for sentence in re.split(r'[.!?;]', text.lower()):
    matches = list(colour_re.finditer(sentence))
    ends = [m.start() for m in matches[1:]] + [len(sentence)]
    for match, end in zip(matches, ends):
      objects.append({'colour': match.group(1), **_parse_clause(sentence[match.end():end])})
  return objects


def _parse_clause(clause: str) -> dict:
  kind = digit = motion = direction = speed = None
  digit_match = re.search(r'\b(\d)\b', clause)
  kind_match = _KIND_MATCHER.first(clause)
  if digit_match and (kind_match is None or digit_match.start() < kind_match[1]):
    kind, digit = 'digit', int(digit_match.group(1))
  elif kind_match is not None:
    kind = kind_match[0]
  direction_match = _DIRECTION_MATCHER.first(clause)
  if _FALL_MATCHER.first(clause) is not None:
    motion = 'fall'
  elif direction_match is not None:
    motion, direction = 'move', direction_match[0]
    speed_match = _SPEED_MATCHER.first(clause)
    speed = speed_match[0] if speed_match else None
  elif _STILL_MATCHER.first(clause) is not None:
    motion = 'still'
  return {'kind': kind, 'digit': digit, 'motion': motion, 'direction': direction, 'speed': speed}


class _Matcher:
  """Finds the earliest of several named phrases in a text; the longest wins at one position."""

  def __init__(self, phrases_by_name: dict[str, Sequence[str]]):
    self._name_of = {p: name for name, phrases in phrases_by_name.items() for p in phrases}
    ordered = sorted(self._name_of, key=len, reverse=True)
    self._pattern = re.compile('|'.join(r'\b' + re.escape(p) + r'(?![\w-])' for p in ordered))

  def first(self, text: str) -> tuple[str, int] | None:
    """(name, position) of the earliest phrase in `text`, or None."""
    match = self._pattern.search(text)
    return None if match is None else (self._name_of[match.group(0)], match.start())


_KIND_MATCHER = _Matcher(KIND_WORDS)
_DIRECTION_MATCHER = _Matcher({name: phrases + _DIRECTION_ALIASES.get(name, ())
                               for name, phrases in DIRECTION_PHRASES.items()})
_SPEED_MATCHER = _Matcher({speed: (*words, speed) for speed, words in SPEED_WORDS.items()})
_FALL_MATCHER = _Matcher({'fall': _FALL_WORDS})
_STILL_MATCHER = _Matcher({'still': _STILL_WORDS})


def _clause(obj, rng: np.random.Generator, gerund: bool) -> str:
  pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
  size = f'{pick(SIZE_WORDS[obj.size])} ' if rng.random() < 0.5 else ''
  if obj.kind == 'digit':
    kind = pick(DIGIT_FORMS).format(obj.digit)
  else:
    kind = pick(KIND_WORDS[obj.kind])
  words = f'{size}{obj.colour} {kind}'
  noun = f'{_article(words)} {words}'
  form = int(gerund)
  if obj.motion == 'still':
    return f'{noun} {pick(STILL_PHRASES)[form]}'
  if obj.motion == 'fall':
    return f'{noun} {pick(FALL_PHRASES)[form]}'
  verb = pick(MOVE_VERBS)[form]
  adverb = pick(SPEED_WORDS[obj.speed])
  where = pick(DIRECTION_PHRASES[obj.direction])
  if rng.random() < 0.5:
    return f'{noun} {verb} {adverb} {where}'
  return f'{noun} {verb} {where} {adverb}'


def _background_phrase(scene, rng: np.random.Generator) -> str:
  style = STYLE_WORDS[scene.background_style][rng.integers(2)]
  noun = 'background' if rng.random() < 0.6 else 'backdrop'
  words = ' '.join(w for w in (style, scene.background, noun) if w)
  return f'{_article(words)} {words}'


def _article(words: str) -> str:
  return 'an' if words[0] in 'aeiou' else 'a'


def _join(clauses: list[str], last_separator: str) -> str:
  if len(clauses) == 1:
    return clauses[0]
  return ', '.join(clauses[:-1]) + last_separator + clauses[-1]


def _sentence(text: str) -> str:
  text = text.strip()
  return text[0].upper() + text[1:] + ('' if text.endswith('.') else '.')
