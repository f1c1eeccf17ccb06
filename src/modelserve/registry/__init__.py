"""The model registry: versions and aliases in SQL, artifacts in an fsspec store.

registry = Registry("sqlite:////srv/.modelserve/registry.db", "/srv/artifacts", "/srv/cache")
manifest = registry.publish("fraud", Path("model.txt"), class_path="fraud:Fraud", ...)
registry.set_alias("fraud", "production", manifest.version)
path = registry.fetch(registry.resolve("fraud@production"))
"""

from modelserve.registry._records import AliasMove, Manifest, ModelSummary
from modelserve.registry._registry import Registry

__all__ = ["AliasMove", "Manifest", "ModelSummary", "Registry"]
