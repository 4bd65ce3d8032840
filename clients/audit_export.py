"""``chs-audit-export``: the audit trail as JSONL, through the API (an admin key).

    chs-audit-export -o audit.jsonl [--from 2026-11-01T00:00:00Z] [--to ...] [--key-name NAME] [--role ROLE]
                     [--route 'GET /cases/{id}'] [--case-id ID] [--status 403] [--url URL] [--api-key KEY]

Writes one JSON line per audited call, newest first, following ``next_cursor`` page after page:
the key's name and role, the route, the id the request named, the case ids of the answer, the time,
the HTTP status and the error code. The trail holds no narrative and no other text a caller wrote.

Exit status: 0 written, 1 the service failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from clients.client import API_KEY_ENV, DEFAULT_URL, URL_ENV, HelplineClient, HelplineError

PAGE_SIZE = 1000  # the most one GET /audit page holds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chs-audit-export", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", required=True, type=Path, help="JSONL file to write")
    parser.add_argument("--from", dest="since", default=None, help="calls from this time (ISO 8601; UTC if no zone)")
    parser.add_argument("--to", dest="until", default=None, help="calls before this time")
    parser.add_argument("--key-name", default=None, help="only calls with the key of this name")
    parser.add_argument("--role", default=None, help="only calls with a key of this role")
    parser.add_argument("--route", default=None, help="only this route, e.g. 'GET /cases/{id}'")
    parser.add_argument("--case-id", default=None, help="only calls that named or answered with this case")
    parser.add_argument("--status", type=int, default=None, help="only calls answered with this HTTP status")
    parser.add_argument("--url", default=None, help=f"service URL (default ${URL_ENV} or {DEFAULT_URL})")
    parser.add_argument("--api-key", default=None, help=f"API key (default ${API_KEY_ENV})")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    filters = {"since": args.since, "until": args.until, "key_name": args.key_name, "role": args.role,
               "route": args.route, "case_id": args.case_id, "status": args.status, "limit": PAGE_SIZE}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with HelplineClient(args.url or os.environ.get(URL_ENV), api_key=args.api_key) as client, \
                open(args.out, "w", encoding="utf-8") as fh:
            cursor = None
            while True:
                page = client.audit(**filters, cursor=cursor)
                for event in page["events"]:
                    fh.write(json.dumps(event, ensure_ascii=False) + "\n")
                written += len(page["events"])
                cursor = page["next_cursor"]
                if cursor is None:
                    break
    except HelplineError as err:
        print(f"chs-audit-export: {err} ({written} rows written before it)", file=sys.stderr)
        return 1
    print(f"chs-audit-export: {written} audit rows written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
