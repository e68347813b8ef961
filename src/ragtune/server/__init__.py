"""The HTTP face: a FastAPI app over an index (search) and a RAG model (ask), with a small web page."""
from ragtune.server.app import create_app

__all__ = ["create_app"]
