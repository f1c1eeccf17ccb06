"""modelserve: team-owned, real-time ML model serving.

The public API is what ``__all__`` lists; everything else is internal and may change.
"""

from modelserve import errors
from modelserve.config import ModelConfig, ServerConfig, Settings, load_settings
from modelserve.model import Model, TensorSpec, TestCase

__version__ = "0.1.0"

__all__ = [
    "Model",
    "ModelConfig",
    "ServerConfig",
    "Settings",
    "TensorSpec",
    "TestCase",
    "__version__",
    "errors",
    "load_settings",
]
