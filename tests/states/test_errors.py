"""The domain errors: what they say and how they nest (the service maps them to protocol codes)."""

from states import ConversationNotFound, InvalidTransition, StaleVersion, TransitionError


def test_refusals_are_transition_errors_that_say_why():
    refused = InvalidTransition("close", "closed")
    guarded = InvalidTransition("assign", "handoff", "a guard refused it")
    stale = StaleVersion("c1", 4)
    assert isinstance(refused, TransitionError) and isinstance(stale, TransitionError)
    assert str(refused) == "cannot close a conversation in state closed"
    assert str(guarded) == "cannot assign a conversation in state handoff: a guard refused it"
    assert (guarded.trigger, guarded.state) == ("assign", "handoff")
    assert str(stale) == "conversation c1 changed concurrently (expected version 4)"
    assert (stale.conversation_id, stale.expected_version) == ("c1", 4)


def test_not_found_is_not_a_transition_error():
    missing = ConversationNotFound("c9")
    assert not isinstance(missing, TransitionError)
    assert (str(missing), missing.conversation_id) == ("conversation c9 not found", "c9")
