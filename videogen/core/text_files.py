"""Text files people write by hand (prompt lists, caption tables): read as UTF-8, or one sentence
naming the encoding they are in and how to convert them."""
import codecs
import pathlib

_WIDE_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # UTF-32's little-endian BOM starts so too


def read_utf8(path, what: str) -> str:
  """The text of `path` (a leading UTF-8 byte-order mark dropped); `what` names the file in the
  errors, e.g. 'prompt file'."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'no {what} at {str(path)!r}: check the path.')
  data = path.read_bytes()
  if data.startswith(_WIDE_BOMS) or b'\x00' in data:
    raise ValueError(f'{what} {str(path)!r} is UTF-16 or UTF-32 text, not UTF-8: save it as UTF-8, '
                     f'e.g. iconv -f utf-16 -t utf-8 {path.name} > utf8_{path.name}.')
  try:
    return data.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    line = data[:e.start].count(b'\n') + 1
    raise ValueError(f'{what} {str(path)!r} is not UTF-8 (byte 0x{data[e.start]:02x} on line '
                     f'{line}, e.g. Latin-1 text): save it as UTF-8, e.g. iconv -f latin1 -t '
                     f'utf-8 {path.name} > utf8_{path.name}.') from None
