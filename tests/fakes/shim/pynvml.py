"""``import pynvml`` for subprocess tests: the scenario-driven fake instead of the real NVML.

Put ``tests/fakes/shim`` first on ``PYTHONPATH`` and name a scenario file in
``PRTG_AI_FAKE_NVML``; ``prtg-ai run gpu`` then reads the scenario exactly as an
in-process test does. The sensor code cannot tell: it just imports ``pynvml``.
"""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
del sys.modules["pynvml"]
import pynvml as _real  # noqa: E402,F401  the real module, for its constants and error classes

sys.path.insert(0, os.path.dirname(_here))
from nvml_fake import FakeNvml, load_scenario  # noqa: E402

sys.modules["pynvml"] = FakeNvml(load_scenario(os.environ["PRTG_AI_FAKE_NVML"]))
