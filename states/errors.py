"""Domain errors of the state machine; the service maps them to protocol codes."""


class TransitionError(Exception):
    """Base of every refused transition: the protocol's `conflict`."""


class InvalidTransition(TransitionError):
    """The trigger is not allowed in the conversation's current state (or a guard refused it)."""

    def __init__(self, trigger: str, state: str, detail: str = ""):
        text = f"cannot {trigger} a conversation in state {state}"
        super().__init__(f"{text}: {detail}" if detail else text)
        self.trigger = trigger
        self.state = state


class StaleVersion(TransitionError):
    """Another writer changed the conversation first; nothing was written."""

    def __init__(self, conversation_id: str, expected_version: int):
        super().__init__(f"conversation {conversation_id} changed concurrently (expected version {expected_version})")
        self.conversation_id = conversation_id
        self.expected_version = expected_version


class ConversationNotFound(Exception):
    """No live record for this conversation id."""

    def __init__(self, conversation_id: str):
        super().__init__(f"conversation {conversation_id} not found")
        self.conversation_id = conversation_id
