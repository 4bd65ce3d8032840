"""A live call's session on the client side: ``HelplineClient.call(call_id)`` and its asyncio twin.

    with HelplineClient(url) as client:
        call = client.call("asterisk-1699999999.42")
        update = call.send("caller says her daughter ")        # the call so far, as a dict
        final = call.end()                                    # the /classify body of the whole call

``send`` numbers the pieces itself (``seq`` from 0). A piece the network lost an answer for is sent
again with the same ``seq`` and text by the client's retries; the service answers such a repeat
without classifying it twice. ``events()`` reads the call's Server-Sent Events (``update``,
``escalation``, ``end``), reconnecting with ``Last-Event-ID`` when a stream ends before the call does.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Iterator, Optional
from urllib.parse import quote


def _path(call_id: str, tail: str = "") -> str:
    return f"/calls/{quote(call_id, safe='')}{tail}"


class EventParser:
    """Server-Sent Events, line by line: ``feed`` returns (id, event, data) when a line ends an event."""

    def __init__(self):
        self.event_id, self.name, self.data = 0, "message", []

    def feed(self, line: str) -> Optional[tuple[int, str, dict]]:
        if line == "":
            out = (self.event_id, self.name, json.loads("\n".join(self.data))) if self.data else None
            self.name, self.data = "message", []
            return out
        if line.startswith("id:"):
            self.event_id = int(line[3:].strip())
        elif line.startswith("event:"):
            self.name = line[6:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].strip())
        return None  # a comment (": connected") or a field still to come


class CallSession:
    """One live call, sent piece by piece (sync); ``client`` is the ``HelplineClient`` that made it."""

    def __init__(self, client: Any, call_id: str, next_seq: int = 0):
        self.client, self.call_id, self.next_seq = client, call_id, next_seq

    def send(self, text: str, *, final: bool = False) -> dict:
        """The transcript's new text since the last piece: the call so far (the closed call's body if final)."""
        r = self.client._send("POST", _path(self.call_id, "/transcript"),
                              {"text": text, "seq": self.next_seq, "final": final})
        self.next_seq += 1
        return r.json()

    def end(self) -> dict:
        return self.client._send("POST", _path(self.call_id, "/end")).json()

    def state(self) -> dict:
        return self.client._send("GET", _path(self.call_id)).json()

    def events(self, after: int = 0) -> Iterator[tuple[str, dict]]:
        """(event, data) until the call's ``end`` event."""
        while True:
            with self.client._http.stream("GET", _path(self.call_id, "/events"),
                                          headers={"last-event-id": str(after)}, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self.client.error_of(response)
                parser = EventParser()
                for line in response.iter_lines():
                    event = parser.feed(line)
                    if event is None:
                        continue
                    after = max(after, event[0])
                    yield event[1], event[2]
                    if event[1] == "end":
                        return


class AsyncCallSession:
    """One live call, sent piece by piece (asyncio); ``client`` is the ``AsyncHelplineClient`` that made it."""

    def __init__(self, client: Any, call_id: str, next_seq: int = 0):
        self.client, self.call_id, self.next_seq = client, call_id, next_seq

    async def send(self, text: str, *, final: bool = False) -> dict:
        r = await self.client._send("POST", _path(self.call_id, "/transcript"),
                                    {"text": text, "seq": self.next_seq, "final": final})
        self.next_seq += 1
        return r.json()

    async def end(self) -> dict:
        return (await self.client._send("POST", _path(self.call_id, "/end"))).json()

    async def state(self) -> dict:
        return (await self.client._send("GET", _path(self.call_id))).json()

    async def events(self, after: int = 0) -> AsyncIterator[tuple[str, dict]]:
        while True:
            async with self.client._http.stream("GET", _path(self.call_id, "/events"),
                                                headers={"last-event-id": str(after)}, timeout=None) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self.client.error_of(response)
                parser = EventParser()
                async for line in response.aiter_lines():
                    event = parser.feed(line)
                    if event is None:
                        continue
                    after = max(after, event[0])
                    yield event[1], event[2]
                    if event[1] == "end":
                        return
