"""A bounded load of customers and agents around one fault, and the books kept after it.

The load: every customer starts one conversation and sends `messages` messages with fresh
client_msg_ids (some ask for a human half-way); agents are online with `AGENT_MAX_CHATS`=2
and auto routing. The fault runs when a share of all messages has been acknowledged. Then the
agents drain (close what they hold and what is routed to them) and every customer waits, on
its socket's events, until its conversation is closed or its last message answered by the AI.

The books, from SQL and over the API: every acknowledged message stored exactly once under
the seq its ack named (lost, duplicates), seqs gapless (gaps), the customer's view after a resume
by seq complete (client_gaps), every `ai` conversation answered (unanswered), nothing left in
`handoff` while agents drain (waiting) nor in `human` with an agent who is gone (abandoned), no
agent over its max_chats (over_max), every connected agent listed online (offline), nothing
refused that should succeed (refused), and every conversation claimable and closable by an admin
(stuck). Also printed, not asserted: sent, acked, stored, reconnects, retried `unavailable`
replies, the slowest AI answer, and customers whose live socket never showed them settled
(unsettled: an event their socket missed; the final resume repairs their view).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from chat.auth import issue_token
from tests.faults.clients import Agent, Customer, Peer

SECRET = "fault-injection-suite-secret-0123456789abcdef"
MAX_CHATS = 2
LOSS_COUNTS = ("lost", "duplicates", "gaps", "client_gaps", "stuck", "unanswered", "waiting", "abandoned", "over_max",
               "offline", "refused")


@dataclass
class Plan:
    """The size of a case's load."""

    customers: int = 12
    messages: int = 8
    agents: int = 2  # with MAX_CHATS=2, fewer seats than the customers who ask for a human
    # customer i asks for a human when i % handoff_every == 0 (0: nobody), before message (3 * i) % messages
    handoff_every: int = 2
    break_at: float = 0.35  # the fault starts once this share of all messages is acknowledged
    settle_s: float = 25.0


@dataclass
class Books:
    """The counts printed for every case; the loss counts must all be zero."""

    case: str
    counts: dict[str, int] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)

    def note(self, name: str, problems: Sequence[str]) -> None:
        """Count a kind of loss and keep a few examples."""
        self.counts[name] = self.counts.get(name, 0) + len(problems)
        self.details += [f"{name}: {p}" for p in list(problems)[:5]]

    def losses(self) -> dict[str, int]:
        """The loss counts that are not zero."""
        return {k: self.counts.get(k, 0) for k in LOSS_COUNTS if self.counts.get(k, 0)}

    def report(self) -> str:
        """One line of counts and the examples, as printed."""
        line = " ".join(f"{k}={v}" for k, v in self.counts.items())
        return "\n".join([f"[books] {self.case}: {line}", *(f"    {d}" for d in self.details[:30])])


Connect = Callable[[], Any]  # a fresh pymysql connection to the case's database


def query(connect: Connect, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of one statement on a fresh connection (the database may have restarted)."""
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def token(sub: str, role: str) -> str:
    """A token for the services of this suite."""
    return issue_token(SECRET, sub, role)


def over_max(connect: Connect) -> list[str]:
    """Agents holding more than MAX_CHATS conversations in `human` right now."""
    rows = query(connect, "SELECT agent_id, COUNT(*) FROM conversations WHERE state = 'human' "
                          "GROUP BY agent_id HAVING COUNT(*) > %s", (MAX_CHATS,))
    return [f"{agent} holds {n}" for agent, n in rows]


def book_messages(books: Books, customers: list[Customer], connect: Connect) -> None:
    """sent / acked / stored, lost, duplicates, seq gaps, the customers' own view."""
    rows = query(connect, "SELECT conversation_id, seq, sender_type, sender_id, client_msg_id FROM messages")
    last = dict(query(connect, "SELECT id, last_seq FROM conversations"))
    stored = {(r[0], r[4]): r[1] for r in rows if r[2] == "customer"}
    dupes = Counter((r[0], r[2], r[3], r[4]) for r in rows if r[4] is not None)
    by_conv: dict[str, list[int]] = {}
    for r in rows:
        by_conv.setdefault(r[0], []).append(r[1])
    lost, moved, client_gaps = [], [], []
    for c in customers:
        cid = c.ledger.conversation_id
        for cmid, seq in c.ledger.acked.items():
            if (cid, cmid) not in stored:
                lost.append(f"{c.ledger.user} {cmid} (acked seq {seq})")
            elif stored[(cid, cmid)] != seq:
                moved.append(f"{cmid}: acked seq {seq}, stored {stored[(cid, cmid)]}")
        if cid is not None:
            missing = sorted(set(by_conv.get(cid, [])) - set(c.ledger.seen))
            if missing:
                client_gaps.append(f"{c.ledger.user} never saw seqs {missing[:8]}")
    gaps = [f"{cid}: seqs {sorted(seqs)[:3]}.. last_seq {last.get(cid)}" for cid, seqs in by_conv.items()
            if sorted(seqs) != list(range(1, len(seqs) + 1)) or last.get(cid) != len(seqs)]
    books.counts.update(sent=sum(len(c.ledger.sent) for c in customers),
                        acked=sum(len(c.ledger.acked) for c in customers), stored=len(stored))
    books.note("lost", lost)
    books.note("duplicates", [f"{k} x{n}" for k, n in dupes.items() if n > 1] + moved)
    books.note("gaps", gaps)
    books.note("client_gaps", client_gaps)
    books.note("refused", [r for c in customers for r in c.ledger.refused])


# for each customer message, the time to the next AI message after it (when there is one)
SLOWEST_ANSWER = (
    "SELECT MAX(a.created_ms - m.created_ms) FROM messages m JOIN messages a ON a.conversation_id = m.conversation_id "
    "AND a.sender_type = 'ai' AND a.seq = (SELECT MIN(seq) FROM messages x WHERE x.conversation_id = m.conversation_id "
    "AND x.sender_type = 'ai' AND x.seq > m.seq) WHERE m.sender_type = 'customer'"
)


def book_states(books: Books, connect: Connect, live_agents: set[str]) -> None:
    """`ai` conversations with an unanswered customer message; conversations left in `handoff`, or in
    `human` with an agent who is gone (the sweeper requeues those, and routing gives them to the live)."""
    newest = "(SELECT MAX(seq) FROM messages m WHERE m.conversation_id = c.id AND sender_type = '{}')"
    sql = f"SELECT c.id, c.state, c.agent_id, {newest.format('customer')}, {newest.format('ai')} FROM conversations c"
    rows = query(connect, sql)
    books.note("unanswered", [f"{cid} customer seq {cust} > ai seq {ai}" for cid, state, _, cust, ai in rows
                              if state == "ai" and (cust or 0) > (ai or 0)])
    books.note("waiting", [f"{cid} still in handoff" for cid, state, *_ in rows if state == "handoff"])
    books.counts["slowest_answer_ms"] = max((r[0] for r in query(connect, SLOWEST_ANSWER)), default=0) or 0
    books.note("abandoned", [f"{cid} in human with {agent}, who is gone" for cid, state, agent, *_ in rows
                             if state == "human" and agent not in live_agents])


async def book_presence(books: Books, http: aiohttp.ClientSession, urls: list[str], connected: set[str]) -> None:
    """Agents whose sockets are open (and who set `online`) listed as online by GET /api/v1/agents."""
    headers = {"Authorization": f"Bearer {token('fault-admin', 'admin')}"}
    listed: dict[str, str] = {}
    for url in urls:  # the first instance that answers (one may be down for good)
        try:
            async with http.get(f"{url}/api/v1/agents", headers=headers) as response:
                if response.status == 200:
                    listed = {a["agent_id"]: a["status"] for a in (await response.json())["items"]}
                    break
        except aiohttp.ClientError:
            continue
    books.note("offline", [f"{agent} connected but listed {listed.get(agent)}" for agent in sorted(connected)
                           if listed.get(agent) != "online"])


async def book_stuck(books: Books, http: aiohttp.ClientSession, urls: list[str], connect: Connect) -> None:
    """Every conversation an admin can still move: claim (from ai/handoff) then close."""
    admin = Peer(http, urls, token("fault-admin", "admin"))
    stuck: list[str] = []
    claim_close = ("conversation.claim", "conversation.close")
    moves = {"ai": claim_close, "handoff": claim_close, "human": ("conversation.close",), "closed": ()}
    try:
        for cid, state in query(connect, "SELECT id, state FROM conversations"):
            for move in moves[state]:
                reply = await admin.call(move, conversation_id=cid)
                if reply.get("type") != "result":
                    stuck.append(f"{cid} ({state}) {move}: {reply.get('code')} {reply.get('message')}")
                    break
    finally:
        await admin.close()
    books.note("stuck", stuck)


def check(books: Books) -> None:
    """Print the books; every loss count must be zero."""
    print(books.report())
    assert not books.losses(), books.report()


async def run_case(load: Load, fault: Callable[[], Awaitable[None]], connect: Connect) -> None:
    """Run the load around the fault, print and check the books, close every socket."""
    try:
        check(await load.run(fault, connect))
    finally:
        await load.close()


class Load:
    """Customers and agents of one case, spread over the instances' URLs."""

    def __init__(self, http: aiohttp.ClientSession, urls: list[str], plan: Plan, case: str):
        self.http, self.urls, self.plan = http, urls, plan
        self.books = Books(case)
        self.customers = [Customer(http, self._spread(i), token(f"{case}-c{i}", "customer"), f"{case}-c{i}")
                          for i in range(plan.customers)]
        self.agents = [Agent(http, self._spread(i), token(f"{case}-a{i}", "agent"), f"{case}-a{i}")
                       for i in range(plan.agents)]
        self.acked = 0
        self.break_point = asyncio.Event()

    def _spread(self, i: int) -> list[str]:
        return self.urls[i % len(self.urls):] + self.urls[: i % len(self.urls)]

    async def open(self) -> None:
        """Agents online, every customer's conversation started."""
        await asyncio.gather(*(a.connect() for a in self.agents))
        started = await asyncio.gather(*(c.start({"case": self.books.case}) for c in self.customers))
        assert all(started), [c.ledger.refused for c in self.customers]

    async def run(self, fault: Callable[[], Awaitable[None]], connect: Connect, *, final_resume: bool = True) -> Books:
        """Load, fault, drain, settle; then the books."""
        await self.open()
        threshold = max(1, int(self.plan.break_at * self.plan.customers * self.plan.messages))
        fault_task = asyncio.create_task(self._fault(fault))
        await self.talk(range(self.plan.messages), threshold)
        await fault_task
        self.books.note("over_max", await asyncio.to_thread(over_max, connect))
        await self.settle(connect, final_resume=final_resume)
        return self.books

    async def _fault(self, fault: Callable[[], Awaitable[None]]) -> None:
        await self.break_point.wait()
        await fault()

    async def talk(self, numbers: range, threshold: int = 0) -> None:
        """Every customer sends messages `m<n>` for n in numbers; the break point is set at `threshold` acks."""
        await asyncio.gather(*(self._talk(i, c, numbers, threshold) for i, c in enumerate(self.customers)))
        self.break_point.set()

    async def _talk(self, i: int, customer: Customer, numbers: range, threshold: int) -> None:
        for n in numbers:
            if self.plan.handoff_every and i % self.plan.handoff_every == 0 and n == (3 * i) % self.plan.messages:
                await customer.handoff()
            if await customer.send(f"m{n}", f"message {n} from {customer.ledger.user}"):
                self.acked += 1
                if self.acked >= threshold:
                    self.break_point.set()

    async def settle(self, connect: Connect, *, final_resume: bool = True) -> None:
        """Agents drain while customers wait to be answered or closed; then every book."""
        stop = asyncio.Event()
        drains = [asyncio.create_task(a.drain([r[0] for r in await asyncio.to_thread(
            query, connect, "SELECT id FROM conversations WHERE state = 'human' AND agent_id = %s", (a.user,))], stop))
            for a in self.agents]
        settled = await asyncio.gather(*(c.settle(self.plan.settle_s) for c in self.customers))
        stop.set()
        await asyncio.gather(*drains)
        # not a loss by itself (the books below are): a customer whose live socket missed an event
        self.books.counts["unsettled"] = settled.count(False)
        self.books.details += [f"unsettled (live view, before the final resume): {c.view()}"
                               for c, ok in zip(self.customers, settled, strict=True) if not ok][:5]
        if final_resume:  # as after a reconnect; without it the view is what the live sockets delivered
            await asyncio.gather(*(c.final_resume() for c in self.customers))
        self.books.counts["reconnects"] = sum(p.reconnects for p in [*self.customers, *self.agents])
        self.books.counts["retried"] = sum(p.retried for p in [*self.customers, *self.agents])
        book_messages(self.books, self.customers, connect)
        book_states(self.books, connect, {a.user for a in self.agents})
        await book_presence(self.books, self.http, self.urls, {a.user for a in self.agents if a.connected})
        await book_stuck(self.books, self.http, self.urls, connect)

    async def close(self) -> None:
        """Close every socket."""
        await asyncio.gather(*(p.close() for p in [*self.customers, *self.agents]), return_exceptions=True)
