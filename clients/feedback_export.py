"""``chs-feedback-export``: the counsellors' corrections as training data, through the API.

    chs-feedback-export --since 2026-11-01 -o train.jsonl [--url URL] [--api-key KEY] [--model ID@REV]

Writes one JSON line per corrected case that has a narrative (sent with the
feedback, or kept by the service with ``feedback.keep_narratives``): the
narrative and the four labels after correction, a task left uncorrected
keeping the model's label. That is what ``python -m training.finetune --train``
reads; ``id`` is the case id, ``model`` the version that made the prediction
and ``corrected`` the tasks a counsellor changed. Prints how many were
written and how many corrections had no narrative.

Exit status: 0 written, 1 the service failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path
from typing import Optional, Sequence

from clients.client import API_KEY_ENV, DEFAULT_URL, URL_ENV, HelplineClient, HelplineError

FIELDS = ("id", "narrative", "main_category", "sub_category", "intervention", "priority", "model", "corrected")


def parse_day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chs-feedback-export", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--since", required=True, type=parse_day, help="feedback received on or after this day (UTC)")
    parser.add_argument("-o", "--out", required=True, type=Path, help="JSONL file to write")
    parser.add_argument("--model", default=None, help="only cases of this model version (id@revision) or id")
    parser.add_argument("--url", default=None, help=f"service URL (default ${URL_ENV} or {DEFAULT_URL})")
    parser.add_argument("--api-key", default=None, help=f"API key (default ${API_KEY_ENV})")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with HelplineClient(args.url or os.environ.get(URL_ENV), api_key=args.api_key) as client:
            exported = client.feedback_export(args.since, args.model)
    except HelplineError as err:
        print(f"chs-feedback-export: {err}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        for example in exported["examples"]:
            line = {"id": example["case_id"], **{k: example[k] for k in FIELDS if k != "id"}}
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    print(f"chs-feedback-export: {len(exported['examples'])} training examples since {args.since} written to "
          f"{args.out}; {exported['skipped_without_narrative']} corrections had no narrative", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
