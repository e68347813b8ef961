"""SQuAD-style reading-comprehension data (SQuAD v1.1, CMRC 2018) as an open-book QA benchmark.

Paragraphs become the knowledge base; questions become records pointing at their paragraph. The open-book split
is by article, in file order, so no test article's paragraphs were seen with their questions in training.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from ragtune.corpus.types import Document
from ragtune.errors import RagtuneError

log = logging.getLogger(__name__)

OPEN_BOOK_TRAIN_ARTICLES = 36  # SQuAD v1.1 dev: articles 0-35 train (8,123 questions), 36-47 test (2,447)


@dataclass
class SquadData:
    documents: list[Document]  # one per paragraph
    questions: list["QARecord"]  # id = the SQuAD id, positive_doc_ids = [its paragraph's Document.id]
    titles: list[str]  # article titles in file order

    @property
    def n_articles(self) -> int:
        return len(self.titles)

    @staticmethod
    def article(q: "QARecord") -> int:
        """A question's article index in file order (its paragraph's id is f"{article}-{paragraph}")."""
        return int(q.positive_doc_ids[0].split("-")[0])


@dataclass
class OpenBookSplit:
    documents: list[Document]  # the knowledge base: every paragraph of every article
    train: list["QARecord"]
    test: list["QARecord"]


def _title(raw: str) -> str:
    # SQuAD titles are Wikipedia slugs ("Super_Bowl_50"); most tokenizers keep "_" inside words, which would
    # hide the title's words from retrieval.
    return raw.replace("_", " ").strip()


def load_squad(path: str | Path) -> SquadData:
    """Paragraphs as Documents (id ``"<article>-<paragraph>"``, title = article title) and their questions."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        articles = raw["data"]
        if not isinstance(articles, list):
            raise TypeError(f"'data' is a {type(articles).__name__}")
    except FileNotFoundError:
        raise RagtuneError(f"SQuAD file {path} not found") from None
    except IsADirectoryError:
        raise RagtuneError(f"{path} is a folder, not a SQuAD-style JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, RecursionError) as e:
        raise RagtuneError(f"{path} is not SQuAD-style JSON with a top-level 'data' list ({e})") from e
    source = str(path.resolve())
    docs: list[Document] = []
    questions: list[QARecord] = []
    titles: list[str] = []
    for a, article in enumerate(articles):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs", []), list):
            raise RagtuneError(f"{path}: article {a} is not an object with a 'paragraphs' list")
        raw_title = str(article.get("title", ""))
        titles.append(_title(raw_title))
        for p, para in enumerate(article.get("paragraphs", [])):
            doc_id = f"{a}-{p}"
            try:
                if not isinstance(para["context"], str):
                    raise TypeError("'context' is not a string")
                docs.append(
                    Document(doc_id, para["context"], _title(raw_title), source, {"article_title": raw_title})
                )
                questions.extend(_question(qa, doc_id, a) for qa in para.get("qas", []))
            except (KeyError, TypeError, AttributeError, ValueError) as e:
                raise RagtuneError(f"{path}: article {a} paragraph {p} is malformed ({type(e).__name__}: {e})") from e
    return SquadData(docs, questions, titles)


def _question(qa: dict[str, Any], doc_id: str, article: int) -> "QARecord":
    question = qa["question"].strip()
    # every gold answer, as annotated (duplicates kept: they are separate annotations)
    return QARecord(question, [x["text"] for x in qa.get("answers", [])], id=str(qa["id"]), positive_doc_ids=[doc_id])


def open_book_split(
    data: SquadData, train_articles: int = OPEN_BOOK_TRAIN_ARTICLES, test_articles: int | None = None
) -> OpenBookSplit:
    """Knowledge base = all paragraphs; train = questions of the first ``train_articles`` articles in file order;
    test = questions of the next ``test_articles`` articles (default: all the rest)."""
    n = data.n_articles
    if not 0 < train_articles < n:
        raise RagtuneError(f"train_articles must be between 1 and {n - 1} for {n} articles, got {train_articles}")
    test_end = n if test_articles is None else min(n, train_articles + test_articles)
    train = [q for q in data.questions if data.article(q) < train_articles]
    test = [q for q in data.questions if train_articles <= data.article(q) < test_end]
    return OpenBookSplit(list(data.documents), train, test)


# -- a generic QA JSONL ----------------------------------------------------------------------------------------


@dataclass
class QARecord:
    """The one question-answer record of training rows, evaluation sets and SQuAD: the question, its gold answers
    and whatever evidence is known (passage-store ids, passage texts, source document ids)."""

    question: str
    answers: list[str]
    positive_ids: list[int] = field(default_factory=list)  # passage-store ids
    positive_texts: list[str] = field(default_factory=list)
    line: int = 0  # 1-based line in the file; 0 when built in memory
    id: str = ""  # the dataset's own question id, when it has one
    positive_doc_ids: list[str] = field(default_factory=list)  # Passage.doc_id of the documents holding the answer
    # a chat turn's (user, assistant) turns before the question (``ragtune convert kdconv``): the row is then a
    # dialogue example, retrieved for and prompted as ``RAG.chat_turn`` does; None for a plain question
    history: list[tuple[str, str]] | None = None

    def to_row(self) -> dict[str, Any]:
        """The JSONL row (optional fields only when set)."""
        row = {"question": self.question, "answers": self.answers, "positive_ids": self.positive_ids,
               "positive_texts": self.positive_texts}
        row = {k: v for k, v in row.items() if v or k in ("question", "answers")}
        return row if self.history is None else row | {"history": [list(t) for t in self.history]}


def parse_qa_row(row: Any, line: int = 0, *, require_answers: bool = False) -> QARecord:
    """One validated row ``{question, answers, positive_ids?, positive_texts?}``; raises ``ValueError`` naming
    the problem. A lone answer string is accepted as a one-answer list; blank answers are dropped."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    q = row.get("question")
    if not isinstance(q, str) or not q.strip():
        raise ValueError("missing or empty 'question'")
    answers = row.get("answers", None if require_answers else [])
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise ValueError("'answers' must be a list of strings")
    answers = [a for a in answers if a.strip()]
    if require_answers and not answers:
        raise ValueError("'answers' is empty")
    ids = row.get("positive_ids", [])
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError("'positive_ids' must be a list of integers")
    texts = row.get("positive_texts", [])
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ValueError("'positive_texts' must be a list of strings")
    history = row.get("history")
    return QARecord(q.strip(), answers, list(ids), list(texts), line,
                    history=None if history is None else parse_history(history))


def parse_history(value: Any) -> list[tuple[str, str]]:
    """A row's ``history``, ``[[user, assistant], ...]``, as turns; raises ``ValueError`` naming the problem."""
    if not isinstance(value, list) or not all(isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) for x in t)
                                              for t in value):
        raise ValueError("'history' must be a list of [user, assistant] pairs")
    return [(u, a) for u, a in value]


def load_qa_jsonl(
    path: str | Path, *, strict: bool = True, problems: list[str] | None = None
) -> list[QARecord]:
    """Rows ``{question, answers, positive_ids?, positive_texts?}``.

    A bad row raises ``RagtuneError`` naming its line (``strict``), or is skipped and described in ``problems``.
    """
    path = Path(path)
    if not path.is_file():
        raise RagtuneError(f"QA file {path} not found")
    return read_jsonl_rows(path, lambda row, n: parse_qa_row(row, n, require_answers=True),
                           lambda n, msg: _bad(path, n, msg, strict, problems))


R = TypeVar("R")


def read_jsonl_rows(path: Path, parse: Callable[[Any, int], R], bad: Callable[[int, str], None]) -> list[R]:
    """``parse(row, line_number)`` of every non-blank line; a line that is not JSON or that ``parse`` rejects with
    ``ValueError`` goes to ``bad(line_number, message)``, which may raise to stop the read."""
    out: list[R] = []
    try:
        with open(path, "rb") as f:
            for n, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    if b"\0" in raw:
                        raise RagtuneError(f"{path} is a binary file, not JSONL text") from None
                    bad(n, f"not UTF-8 text (invalid byte at offset {e.start})")
                    continue
                if not line.strip():
                    continue
                try:
                    out.append(parse(json.loads(line), n))
                except json.JSONDecodeError as e:
                    bad(n, f"not valid JSON ({e.msg})")
                except RecursionError:
                    bad(n, "JSON nested too deeply")
                except ValueError as e:
                    bad(n, str(e))
    except IsADirectoryError:
        raise RagtuneError(f"{path} is a folder, not a JSONL file") from None
    except OSError as e:
        raise RagtuneError(f"{path} is unreadable: {e.strerror or e}") from None
    return out


def _bad(path: Path, line: int, msg: str, strict: bool, problems: list[str] | None) -> None:
    text = f"{path} line {line}: {msg}"
    if strict:
        raise RagtuneError(text)
    log.warning(text)
    if problems is not None:
        problems.append(text)
