"""Live call sessions: a call's transcript classified piece by piece, its final answer the /classify one. Pure.

A case-management system sends a call's transcript as it grows (``POST /calls/{call_id}/transcript``,
pieces numbered by ``seq`` from 0). ``CallSessions`` keeps, per call, a ``CallState`` that holds what the
next piece needs and nothing more of the text:

- the probabilities of every *settled* window: one whose tokens are all of finished words, so no later
  text can change it (windows are cut exactly as ``window_spans`` cuts the whole transcript);
- the token ids from the start of the first unsettled window on (at most the overlap plus a window),
  and the normalized part-word at the end, which the next piece may continue;
- the probabilities of the unsettled windows as of the last piece, so ending the call needs no model;
- the last ``LEXICON_CARRY`` characters as sent, so a safety-lexicon phrase cut between two pieces is
  still found, and the first ``SAMPLE_CHARS`` characters, from which the language is identified.

Each piece therefore classifies only the windows its text touches. Tokenization is by word (the
normalized text keeps only a-z, digits and whitespace, and WordPiece never joins two words), so the
windows of the pieces are the windows of the whole transcript, and the case assembled at the end from
the kept probabilities is the case ``/classify`` assembles for the whole text (``CaseAssembler``, the
same aggregation and routing). Two limits of that equality, both documented: the language is
identified from the first ``SAMPLE_CHARS`` characters (``/classify`` samples a longer narrative
across its length), and a call is never translated.

The state is a JSON dict, kept in the case store (``call_sessions``) between pieces, so any ingress
replica, or a redeployed app, continues a call where the last piece left it. When the call closes,
``CallSessions.close`` keeps only its summary: labels, timeline, escalation, the case id; no text.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Optional

import numpy as np

from deployments.core.errors import ServiceError
from deployments.core.labels import TASKS
from deployments.core.language import SAMPLE_CHARS
from deployments.core.postprocess import RESULT_TASKS, CaseAssembler
from deployments.core.preprocess import CasePlan, CasePreparer
from deployments.core.screening import count_words
from deployments.core.text import normalize_narrative
from deployments.core.windowing import TokenWindows, WindowSpan, window_spans

# Characters of the text as sent kept from one piece to the next, for lexicon phrases cut between
# pieces. A match is final once it ends LEXICON_SETTLED characters before the text's end: the
# lexicon looks at most EXCLUSION_WINDOW (120) characters around a phrase, and no phrase is longer.
LEXICON_CARRY = 1000
LEXICON_SETTLED = 500
# The SSE stream replays at most this many of a call's latest events to a client that reconnects.
KEPT_EVENTS = 200
_LAST_SPACE = re.compile(r"\s(?=\S*\Z)")

OPEN, CLOSED = "open", "closed"


def digest(text: str) -> str:
    """What a piece is recognised by when repeated: never the text itself."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def encode_probs(probs: Mapping[str, np.ndarray]) -> dict:
    return {task: {"rows": int(np.asarray(p).shape[0]),
                   "f32": base64.b64encode(np.ascontiguousarray(p, dtype=np.float32).tobytes()).decode()}
            for task, p in probs.items()}


def decode_probs(encoded: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for task, item in encoded.items():
        flat = np.frombuffer(base64.b64decode(item["f32"]), dtype=np.float32)
        out[task] = flat.reshape(item["rows"], -1) if item["rows"] else flat.reshape(0, 0)
    return out


def join_probs(parts: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    parts = [p for p in parts if p and len(p[TASKS[0]])]
    return {task: np.concatenate([np.asarray(p[task], dtype=np.float32) for p in parts]) for task in TASKS}


@dataclass(frozen=True)
class Piece:
    seq: int
    text: str
    final: bool = False


@dataclass
class Work:
    """What one piece needs from the model: ``windows`` (the unsettled ones), and the state to settle."""

    state: dict
    windows: TokenWindows
    spans: list[WindowSpan]


class CallSessions:
    def __init__(self, preparer: CasePreparer, assembler: CaseAssembler):
        if preparer.screen is None:
            raise ValueError("a call needs the narrative screen (language, lexicon, length)")
        self.preparer = preparer
        self.assembler = assembler
        self.content = preparer.max_length - 2
        self.step = self.content - preparer.overlap

    # -- a piece's arrival ---------------------------------------------------------------------------

    @staticmethod
    def open(call_id: str, now: datetime) -> dict:
        return {"call_id": call_id, "status": OPEN, "next_seq": 0, "digests": [], "opened_at": now.isoformat(),
                "updated_at": now.isoformat(), "closed_at": None, "chars": 0, "words": 0, "committed": 0,
                "settled": {}, "carry": [], "pending": "", "tail": {}, "lexicon_carry": "", "lexicon": [],
                "sample": "", "labels": {}, "timeline": [], "escalation": None, "events": [], "event_id": 0,
                "last": None, "case_id": None, "final": None}

    @staticmethod
    def check(state: dict, piece: Piece) -> bool:
        """True for a new piece; False for a repeat of one already taken (answer it again). 409 otherwise."""
        if piece.seq < state["next_seq"]:
            if state["status"] == OPEN and state["digests"][piece.seq] != digest(piece.text):
                raise ServiceError(409, "piece_conflict", f"Piece {piece.seq} of this call was already taken with "
                                   "other text.")
            if state["status"] == CLOSED and piece.seq != state["next_seq"] - 1:
                raise ServiceError(409, "call_closed", "This call is closed.")
            return False
        if state["status"] == CLOSED:
            raise ServiceError(409, "call_closed", "This call is closed.")
        if piece.seq > state["next_seq"]:
            raise ServiceError(409, "piece_gap", f"Piece {piece.seq} came before piece {state['next_seq']}; send "
                               f"the pieces in order from {state['next_seq']}.")
        return True

    def advance(self, state: dict, text: str) -> Work:
        """Take a new piece's text into a copy of the state: tokens, lexicon, sample; the windows to classify."""
        state = dict(state)
        tokenizer = self.preparer.tokenizer
        normalized = state["pending"] + _normalize_run(text)
        cut = _LAST_SPACE.search(normalized)
        done, pending = (normalized[:cut.end()], normalized[cut.end():]) if cut else ("", normalized)
        new_tokens = tokenizer.encode([done])[0] if done.strip() else []
        carry = list(state["carry"]) + [int(t) for t in new_tokens]
        committed = state["committed"] + len(new_tokens)
        pending_tokens = [int(t) for t in tokenizer.encode([pending])[0]] if pending else []
        state.update(carry=carry, committed=committed, pending=pending,
                     words=state["words"] + count_words(done))
        # The lexicon over the carried characters and the new ones; offsets into the whole transcript.
        window_text = state["lexicon_carry"] + text
        base = state["chars"] - len(state["lexicon_carry"])
        chars = state["chars"] + len(text)
        settled_before = chars - LEXICON_SETTLED
        kept = [m for m in state["lexicon"] if m["settled"]]
        taken = {(m["start"], m["end"]) for m in kept}
        for m in self.preparer.screen.lexicon.match(window_text):
            start, end = base + m.start, base + m.end
            if end <= state["chars"] - LEXICON_SETTLED or (start, end) in taken:
                continue  # settled by an earlier piece
            kept.append({"category": m.category, "language": m.language, "text": m.text, "start": start,
                         "end": end, "entry_id": m.entry_id, "settled": end <= settled_before})
        state.update(lexicon=sorted(kept, key=lambda m: m["start"]), chars=chars,
                     lexicon_carry=window_text[-LEXICON_CARRY:],
                     sample=(state["sample"] + text)[:SAMPLE_CHARS] if len(state["sample"]) < SAMPLE_CHARS
                     else state["sample"])
        n_tokens = committed + len(pending_tokens)
        spans = self._spans(n_tokens)
        first = self._settled_count(state)
        todo = spans[first:]
        origin = first * self.step
        tokens = np.asarray(carry + pending_tokens, dtype=np.int32)
        rows = [np.concatenate([[tokenizer.cls_id], tokens[s.start - origin:s.end - origin], [tokenizer.sep_id]])
                .astype(np.int32) for s in todo]
        return Work(state, TokenWindows.from_rows(rows), todo)

    def settle(self, work: Work, probs: Mapping[str, np.ndarray], seq: int, text_digest: str,
               now: datetime) -> tuple[dict, dict]:
        """The state once the model has read the piece's windows, and the piece's answer."""
        state = work.state
        probs = {task: np.asarray(probs[task], dtype=np.float32) if probs else np.zeros((0, 0), np.float32)
                 for task in TASKS}
        # A window is settled when it is full and all its tokens are of finished words; those are a prefix
        # of the piece's windows (spans are in order and each ends later than the one before).
        n_new = sum(1 for s in work.spans if s.length == self.content and s.end <= state["committed"])
        settled = decode_probs(state["settled"]) if state["settled"] else {}
        if n_new:
            settled = join_probs([settled, {t: probs[t][:n_new] for t in TASKS}])
            drop = n_new * self.step
            state["carry"] = state["carry"][drop:]
        if self.preparer.truncate and self._settled_count(state) + n_new:
            state["carry"] = []  # truncating: the first window is all the model reads
        state["settled"] = encode_probs(settled) if settled else {}
        state["tail"] = encode_probs({t: probs[t][n_new:] for t in TASKS})
        state["windows_classified"] = len(work.spans)
        state["next_seq"] = seq + 1
        state["digests"] = list(state["digests"]) + [text_digest]
        state["updated_at"] = now.isoformat()
        body, routing_escalates, reasons = self._interim(state)
        changed = [t for t in RESULT_TASKS if state["labels"].get(t) != _label(body["classification"][t])]
        timeline = list(state["timeline"])
        for task in changed:
            timeline.append({"seq": seq, "at": now.isoformat(), "task": task,
                             "label": _label(body["classification"][task]),
                             "previous": state["labels"].get(task)})
        state["labels"] = {t: _label(body["classification"][t]) for t in RESULT_TASKS}
        state["timeline"] = timeline
        events = []
        if routing_escalates and state["escalation"] is None:
            # Sticky: a later piece that reads lower never takes it back.
            state["escalation"] = {"at": now.isoformat(), "seq": seq, "reasons": reasons}
            events.append("escalation")
        answer = {**body, "call_id": state["call_id"], "seq": seq, "status": OPEN, "windows": len(work.spans),
                  "changed": changed,
                  "escalated_at": state["escalation"]["at"] if state["escalation"] else None,
                  "escalation": state["escalation"]}
        state["last"] = answer
        self._emit(state, "update", _without_text(answer))
        for name in events:
            self._emit(state, name, {"call_id": state["call_id"], **state["escalation"]})
        return state, answer

    # -- the whole call ------------------------------------------------------------------------------

    def final_case(self, state: dict) -> tuple[CasePlan, dict[str, np.ndarray]]:
        """The plan and window probabilities of the whole transcript: what /classify would hand the Router."""
        parts = [decode_probs(state["settled"])] if state["settled"] else []
        parts.append(decode_probs(state["tail"]) if state["tail"] else {})
        probs = join_probs(parts)
        return self._plan(state, len(probs[TASKS[0]])), probs

    def close(self, state: dict, final: dict, now: datetime, reason: str = "end") -> dict:
        """The closed call's summary: the final answer, timeline and escalation; no text, no tokens."""
        closed = {k: state[k] for k in ("call_id", "opened_at", "timeline", "escalation", "labels", "event_id",
                                        "events", "next_seq")}
        summary = _without_text(final)
        closed.update(status=CLOSED, closed_at=now.isoformat(), updated_at=now.isoformat(),
                      case_id=final.get("case_id"), final=summary, last=summary, digests=[],
                      windows_classified=state.get("windows_classified", 0))
        self._emit(closed, "end", {**summary, "reason": reason})
        closed["events"] = [_without_text(e) for e in closed["events"]]
        return closed

    def final_body(self, state: dict, case: dict) -> dict:
        """The /end answer: the /classify body for the whole transcript, the case id, timeline and escalation."""
        return {**case, "call_id": state["call_id"], "status": CLOSED, "timeline": state["timeline"],
                "escalated_at": state["escalation"]["at"] if state["escalation"] else None,
                "escalation": state["escalation"]}

    @staticmethod
    def public(body: dict) -> dict:
        """A body fit for GET /calls/{call_id} and the event stream: no words of the transcript."""
        return _without_text(body)

    @staticmethod
    def new_case_id() -> str:
        return str(uuid.uuid4())

    # -- helpers -------------------------------------------------------------------------------------

    def _spans(self, n_tokens: int) -> list[WindowSpan]:
        spans = window_spans(n_tokens, self.preparer.max_length, self.preparer.overlap)
        return spans[:1] if self.preparer.truncate else spans

    def _settled_count(self, state: dict) -> int:
        return state["settled"][TASKS[0]]["rows"] if state["settled"] else 0

    def _plan(self, state: dict, n_windows: int) -> CasePlan:
        n_tokens = state["committed"] + (len(self.preparer.tokenizer.encode([state["pending"]])[0])
                                         if state["pending"] else 0)
        all_spans = window_spans(n_tokens, self.preparer.max_length, self.preparer.overlap)
        spans = self._spans(n_tokens)
        if len(spans) != n_windows:
            raise RuntimeError(f"the call has {n_windows} windows' probabilities for {len(spans)} windows")
        screen = self.preparer.screen
        language = screen.identifier.identify(state["sample"])
        lexicon = [screen.lexicon_signal(_Match(**{k: m[k] for k in ("category", "language", "text", "start",
                                                                          "end", "entry_id")}))
                   for m in state["lexicon"]]
        words = state["words"] + (1 if count_words(state["pending"]) else 0)
        found = screen.judge(language, lexicon, words)
        return CasePlan(tuple(spans), n_tokens, self.preparer.truncate and len(all_spans) > 1,
                        language=found.language.to_json(), signals=found.signals)

    def _interim(self, state: dict) -> tuple[dict, bool, list[str]]:
        plan, probs = self.final_case(state)
        ((body, _classification, routing),) = self.assembler.assemble([plan], probs)
        return body, routing.escalate, routing.reasons

    @staticmethod
    def _emit(state: dict, name: str, data: dict) -> None:
        state["event_id"] = state.get("event_id", 0) + 1
        state["events"] = (list(state["events"]) + [{"id": state["event_id"], "event": name, "data": data}])[
            -KEPT_EVENTS:]


@dataclass(frozen=True)
class _Match:
    """A lexicon match as the screen renders it (``LexiconMatch``'s fields), rebuilt from the call's state."""

    category: str
    language: str
    text: Optional[str]
    start: int
    end: int
    entry_id: str


def _normalize_run(text: str) -> str:
    """``normalize_narrative`` without its strip: a piece's leading or trailing space separates words."""
    return normalize_narrative("\x00" + text + "\x00")


def _label(prediction: Any) -> Any:
    return prediction["label"] if isinstance(prediction, dict) else prediction


def _without_text(body: dict) -> dict:
    """A body with no words of the transcript: the lexicon signals lose their matched text."""
    if not isinstance(body, dict):
        return body
    out = dict(body)
    if isinstance(out.get("data"), dict):
        out["data"] = _without_text(out["data"])
    routing = out.get("routing")
    if isinstance(routing, dict) and routing.get("signals"):
        out["routing"] = {**routing, "signals": [{**s, "text": None} for s in routing["signals"]]}
    return out
