"""Moved to videogen.inference.generate; this alias stays for one release."""
import warnings

from videogen.inference.generate import *  # noqa: F401,F403

warnings.warn('videogen.generate moved to videogen.inference.generate; import it from there.',
              DeprecationWarning, stacklevel=2)
