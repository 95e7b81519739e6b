"""One module per game; importing this package registers them all with `jaxgym.make`."""

from jaxgym.games import swap  # noqa: F401
from jaxgym.games import twenty48  # noqa: F401
from jaxgym.games import shisensho  # noqa: F401
