import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite's programs are small and compiled once each, so compiling dominates its time.
# Without LLVM's optimisations XLA compiles them about 1.7x faster, and with the classic
# elemental emitters in place of the newer fusion emitters about 2.5x faster again (measured on
# tests/test_render.py + tests/test_grpo.py: 44 s of XLA compile -> 17 s). Results are checked,
# not timed, here (benchmarks run with the default flags).
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
if FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE).strip()

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


@pytest.fixture
def key():
    return jax.random.key(0)


# The slowest modules first: pytest-xdist (`--dist loadfile`) hands out whole files in this
# order, so the long training tests do not start last and leave one worker idle at the end.
SLOW_FIRST = ("test_train.py", "test_sft.py", "test_grpo.py", "test_model.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)
