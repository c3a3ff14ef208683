"""berth: a Kubernetes operator that runs container registries and looks after their contents."""

__version__ = "0.1.0"
