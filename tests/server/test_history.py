"""rag.history.split_messages: OpenAI-style messages -> (question, history) as ``ragtune chat`` keeps it."""
import pytest

from ragtune.errors import RagtuneError
from ragtune.rag.history import split_messages


def test_last_user_message_is_the_question_and_turns_pair_up():
    q, h = split_messages([("system", "be brief"), ("user", "Tell me about the tower"), ("assistant", "It is in Paris."),
                           ("user", "When was it built?")])
    assert q == "When was it built?" and h == [("Tell me about the tower", "It is in Paris.")]


def test_consecutive_messages_join_and_unanswered_turns_keep_an_empty_reply():
    q, h = split_messages([("user", "a"), ("user", "b"), ("assistant", "c"), ("assistant", "d"), ("tool", "x"), ("user", "e")])
    assert q == "e" and h == [("a\n\nb", "c\n\nd")]
    q, h = split_messages([("assistant", "hello"), ("user", "q")])
    assert q == "q" and h == []


@pytest.mark.parametrize("messages", [[], [("assistant", "hi")], [("user", "q"), ("assistant", "a")], [("user", "   ")], [("system", "s")]])
def test_no_question_is_an_error(messages):
    with pytest.raises(RagtuneError):
        split_messages(messages)
