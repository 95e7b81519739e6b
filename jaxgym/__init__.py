"""jaxgym: VLM-Gym's visual puzzle games as pure, batched JAX functions.

    import jax, jaxgym
    env = jaxgym.make("swap")                        # or make("swap", preset="easy", rows=6)
    state = env.reset(jax.random.key(0))
    state = env.step(state, env.expert_action(state))
"""

from jaxgym import games  # noqa: F401  (registers every game)
from jaxgym import text  # noqa: F401
from jaxgym.core import (
    EMPTY,
    INVALID_ACTION,
    Env,
    PairEnv,
    State,
    is_legal,
    knobs,
    list_games,
    make,
    random_legal_action,
)
from jaxgym.wrappers import AutoReset

__all__ = [
    "EMPTY",
    "INVALID_ACTION",
    "AutoReset",
    "Env",
    "PairEnv",
    "State",
    "is_legal",
    "knobs",
    "list_games",
    "make",
    "random_legal_action",
]
