"""Request bodies, their bounds, and one JSON error shape for every 4xx/5xx.

Every error body is ``{"error": {"message", "type", "code"}, "detail": message}`` (OpenAI's shape, plus the
``detail`` FastAPI clients read). Validation errors never echo the input back: an echoed ``inf`` or lone
surrogate is what made the old server fail with 500 while encoding its own 422.
"""
from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragtune.config import RagMode, ServerConfig
from ragtune.errors import RagtuneError

log = logging.getLogger("ragtune.server")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error", 413: "request_too_large",
          422: "invalid_request_error", 429: "rate_limit_error", 503: "unavailable", 504: "timeout"}


def _unicode(s: str) -> str:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (it holds a lone surrogate)") from None
    return s


Text = Annotated[str, AfterValidator(_unicode)]


class SearchRequest(BaseModel):
    query: Text = Field(..., min_length=1)
    k: int = Field(10, ge=1)
    retriever: Text | None = None


class DecodingFields(BaseModel):
    """Decoding options a request may set; None keeps the generator's default."""

    model_config = ConfigDict(extra="ignore")

    mode: RagMode | None = None
    k: int | None = Field(None, ge=1)
    retriever: Text | None = None
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: Text | list[Text] | None = None


class AskRequest(DecodingFields):
    question: Text = Field(..., min_length=1)
    history: list[tuple[Text, Text]] = []
    decoding: Literal["greedy", "beam", "sample"] | None = None
    max_new_tokens: int | None = Field(None, ge=1)


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"), "code": status}, "detail": message}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def check_bounds(cfg: ServerConfig, *, k: int | None = None, max_tokens: int | None = None, texts: tuple[str, ...] = (),
                 turns: int = 0) -> None:
    """Raise 422 when a request asks for more than ``[server]`` allows."""
    if k is not None and k > cfg.max_k:
        raise HTTPException(422, f"k must be at most {cfg.max_k}")
    if max_tokens is not None and max_tokens > cfg.max_tokens:
        raise HTTPException(422, f"max_tokens must be at most {cfg.max_tokens}")
    if any(len(t) > cfg.max_question_chars for t in texts):
        raise HTTPException(422, f"a question or message is longer than {cfg.max_question_chars} characters")
    if turns > cfg.max_messages:
        raise HTTPException(422, f"at most {cfg.max_messages} messages or history turns")


def sampling(temperature: float | None, top_p: float | None) -> dict[str, Any]:
    """OpenAI's sampling fields as generator options: temperature 0 is greedy, any other sampling field samples."""
    if temperature is None and top_p is None:
        return {}
    if temperature == 0:
        return {"decoding": "greedy"}
    return {"decoding": "sample", "temperature": temperature, "top_p": top_p}


def status_of(e: BaseException) -> int:
    """The HTTP status of an error raised while answering: the user's fault (400) or ours (500)."""
    return 400 if isinstance(e, (RagtuneError, TypeError, ValueError)) else 500


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            if err.get("type") == "json_invalid":
                parts.append("the body is not valid JSON")
                continue
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        return error_response(422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RagtuneError)
    async def user_error(request: Request, exc: RagtuneError) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error")
