"""``router pull``: download a GGUF from the Hugging Face Hub and verify it.

    router pull tinyllama
    router pull REPO FILE [--revision REV] [--quiet]

The file lands in the Hub cache (``HF_HOME``, ``HF_HUB_CACHE``; ``HF_ENDPOINT`` for a mirror),
is checked against the sha256 the Hub reports and is then usable by a policy as
``gguf: hf:REPO/FILE`` (``hf:REPO@REV/FILE`` for another revision). The path is printed, with
the ``gguf:`` value to use. Exit codes: 0 downloaded (or already there) and verified; 1 bad
arguments, the Hub unreachable or offline, no such file, or a checksum mismatch.
"""

from __future__ import annotations

import argparse
import os
import sys

from router.providers.hub import ALIASES, HubError, make_ref, pull


def cmd_pull(args: argparse.Namespace) -> int:
    # huggingface_hub 2.x otherwise fetches {HF_ENDPOINT}/api/agent-harnesses and extends its
    # user agent (read once, at its import; the user's own setting wins).
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        if args.file is None:
            if args.repo not in ALIASES:
                raise ValueError(f"unknown model {args.repo!r}: give REPO FILE, or one of {', '.join(ALIASES)}")
            ref = ALIASES[args.repo] if args.revision is None else make_ref(
                ALIASES[args.repo].repo_id, ALIASES[args.repo].filename, args.revision)
        else:
            ref = make_ref(args.repo, args.file, args.revision)
        path = pull(ref, progress=not args.quiet)
    except (ValueError, HubError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{path}\nverified sha256; use it in a policy as  gguf: {ref}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("pull", help="download a GGUF from the Hugging Face Hub and verify its sha256")
    parser.add_argument("repo", help=f"a Hub repo id OWNER/NAME, or one of: {', '.join(ALIASES)}")
    parser.add_argument("file", nargs="?", default=None, help="the GGUF's path in the repo")
    parser.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=cmd_pull)
