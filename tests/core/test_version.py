"""One release number: the installed distribution, the package root and the core module agree."""

from importlib.metadata import version

import durable_nb
from durable_nb.core.version import __version__


def test_the_version_is_defined_once():
    assert durable_nb.__version__ == __version__
    assert version("durable_nb") == __version__
