"""Moved to videogen.inference.prompting; this alias stays for one release."""
import warnings

from videogen.inference.prompting import *  # noqa: F401,F403

warnings.warn('videogen.prompting moved to videogen.inference.prompting; import it from there.',
              DeprecationWarning, stacklevel=2)
