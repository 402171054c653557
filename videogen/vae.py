"""Moved to videogen.inference.vae; this alias stays for one release."""
import warnings

from videogen.inference.vae import *  # noqa: F401,F403

warnings.warn('videogen.vae moved to videogen.inference.vae; import it from there.',
              DeprecationWarning, stacklevel=2)
