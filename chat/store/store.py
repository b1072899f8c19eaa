"""The SQL store: one object holding a repository per resource, all on one Database.

`store.messages.append(...)`, `store.staff.agent_exists(...)`, `store.teams.exists(...)`: a
resource's reads and writes live together in its module.
"""

from __future__ import annotations

from chat.store.accounts import Accounts
from chat.store.canned import CannedResponses
from chat.store.conversations import Conversations
from chat.store.csat import Csat
from chat.store.db import Database
from chat.store.erasure import Erasure
from chat.store.events import Events
from chat.store.export import ExportReads
from chat.store.labels import Labels
from chat.store.listing import ConversationListing
from chat.store.messages import Messages
from chat.store.migrations import Migrations
from chat.store.staff import Staff
from chat.store.stats import Stats
from chat.store.teams import Teams
from chat.store.timers import TimerReads
from chat.store.webhooks import Webhooks


class Store:
    """Every SQL the service runs, by resource."""

    def __init__(self, db: Database):
        self.db = db
        self.migrations = Migrations(db)
        self.labels = Labels(db)
        self.webhooks = Webhooks(db)  # the outbox: written in the transactions of the changes below
        self.conversations = Conversations(db, self.labels, self.webhooks)
        self.messages = Messages(db, self.webhooks)
        self.events = Events(db)
        self.staff = Staff(db)
        self.accounts = Accounts(db)
        self.teams = Teams(db)
        self.listing = ConversationListing(db, self.labels)
        self.timers = TimerReads(db, self.webhooks)
        self.export = ExportReads(db)
        self.csat = Csat(db, self.webhooks)
        self.stats = Stats(db, self.csat)
        self.canned = CannedResponses(db)
        self.erasure = Erasure(db, self.webhooks)
