"""One module per game; importing this package registers them all with `jaxgym.make`."""

from jaxgym.games import swap  # noqa: F401
