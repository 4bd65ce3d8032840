"""``chs-replay``: a transcript file replayed as a live call, at a chosen pace, printing each update and alert.

    chs-replay call.txt --chars 150 --every 2.0 [--call-id ID] [--url URL] [--api-key KEY]

The file's text is sent in pieces of about ``--chars`` characters (cut after a space where there is
one; OpenCHS classifies every ~150 new characters), one every ``--every`` seconds, as
``POST /calls/{call_id}/transcript``, then the call is ended. Each answer prints one line: the piece,
the labels that changed, the priority and the queue; an escalation prints an ``ALERT`` line with its
reasons, once. The last line is the closed call's case id and labels. Nothing of the transcript is
printed.

Exit status: 0 the call was replayed and ended, 1 the service failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Optional, Sequence

from clients.client import API_KEY_ENV, DEFAULT_URL, URL_ENV, HelplineClient, HelplineError


def pieces_of(text: str, chars: int) -> list[str]:
    """Consecutive pieces of about ``chars`` characters, each cut after a space when one is near."""
    out, start = [], 0
    while start < len(text):
        end = min(start + chars, len(text))
        if end < len(text):
            space = text.rfind(" ", start + chars // 2, end)
            end = space + 1 if space >= 0 else end
        out.append(text[start:end])
        start = end
    return out


def _label(prediction) -> str:
    return str(prediction["label"] if isinstance(prediction, dict) else prediction)


def describe(update: dict) -> str:
    c = update["classification"]
    changed = ", ".join(f"{t}={_label(c[t])}" for t in update.get("changed") or []) or "no change"
    return (f"piece {update['seq']}: {changed}; priority {_label(c['priority'])}, queue {update['routing']['queue']}, "
            f"{update['windows']} window(s) read, {update['tokens']} tokens so far")


def replay(client: HelplineClient, call_id: str, pieces: Sequence[str], every_s: float,
           out: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep) -> dict:
    """Send the pieces as a live call, printing each answer; the closed call's body."""
    call = client.call(call_id)
    alerted = False
    for i, piece in enumerate(pieces):
        if i:
            sleep(every_s)
        update = call.send(piece)
        out(describe(update))
        if update.get("escalation") and not alerted:
            alerted = True
            reasons = "; ".join(update["escalation"]["reasons"])
            out(f"ALERT call {call_id} escalated at piece {update['escalation']['seq']} "
                f"({update['escalation']['at']}): {reasons}")
    final = call.end()
    labels = ", ".join(f"{t}={_label(final['classification'][t])}" for t in
                       ("main_category", "sub_category", "intervention", "priority"))
    out(f"ended call {call_id}: case {final['case_id']}; {labels}; escalated_at {final['escalated_at']}")
    return final


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chs-replay", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("transcript", type=Path, help="a UTF-8 text file: the call's transcript")
    parser.add_argument("--chars", type=int, default=150, help="characters per piece (default 150)")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between pieces (default 2.0)")
    parser.add_argument("--call-id", default=None, help="the call's id (default: a new random one)")
    parser.add_argument("--url", default=None, help=f"service URL (default ${URL_ENV} or {DEFAULT_URL})")
    parser.add_argument("--api-key", default=None, help=f"API key (default ${API_KEY_ENV})")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.chars < 1 or args.every < 0:
        print("chs-replay: --chars must be at least 1 and --every not negative", file=sys.stderr)
        return 2
    try:
        text = args.transcript.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"chs-replay: cannot read {args.transcript}: {exc}", file=sys.stderr)
        return 2
    call_id = args.call_id or f"replay-{uuid.uuid4()}"
    try:
        with HelplineClient(args.url or os.environ.get(URL_ENV), api_key=args.api_key) as client:
            replay(client, call_id, pieces_of(text, args.chars), args.every)
    except HelplineError as err:
        print(f"chs-replay: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
