"""``medmoe serve``: a browser viewer and HTTP API for interactive segmentation.

Needs the ``serve`` extra (FastAPI, uvicorn, httpx): ``pip install "medmoe[serve]"``.
"""

from medmoe.serve.store import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str):
    if name == "create_app":  # FastAPI is imported only when the app is built
        from medmoe.serve.app import create_app

        return create_app
    raise AttributeError(name)
