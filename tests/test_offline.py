"""Offline is a feature: importing, counting tokens, explaining and answering under a local-only
policy make no connection, name lookup or datagram (checked with a Python audit hook in a fresh
interpreter). Creating a socket is not traffic: urllib3, imported by langchain-core's tracing
client, probes IPv6 support at import by binding a socket to ::1, which we allow (loopback only)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = textwrap.dedent("""
    import json, sys
    events = []
    TRAFFIC = {"socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
               "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"}
    def hook(event, args):
        if event in TRAFFIC:
            events.append(f"{event} {args[1:]!r}")
        elif event == "socket.bind" and str(args[1][0]) not in ("::1", "127.0.0.1"):
            events.append(f"{event} {args[1]!r}")
    sys.addaudithook(hook)
    stage = {}
    import router
    from langchain_core.messages import HumanMessage
    from router.routing.tokens import count_openai_tokens, estimate_gemini_tokens
    stage["import"] = list(events)
    msgs = [HumanMessage("What is the capital of France?")]
    assert count_openai_tokens(msgs) > 5 and estimate_gemini_tokens(msgs) > 5
    stage["count"] = list(events)
    r = router.PolicyRouter.from_yaml(sys.argv[1])
    decision = r.explain("What is the capital of France?")
    stage["explain"] = list(events)
    msg = r.invoke("What is the capital of France?")
    stage["invoke"] = list(events)
    stage["answer"] = msg.content
    stage["modules"] = sorted(m for m in ("langchain_openai", "langchain_google_genai", "openai", "google.genai")
                              if m in sys.modules)
    print("RESULT" + json.dumps(stage))
""")


def _run(policy: str, env_extra: dict[str, str] | None = None) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / "policies" / policy)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(row for row in proc.stdout.splitlines() if row.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def test_import_count_explain_and_local_answer_open_no_socket():
    stage = _run("offline.yaml", {"OPENAI_API_KEY": "sk-test-not-used", "GOOGLE_API_KEY": "g-test-not-used"})
    assert stage["import"] == [] and stage["count"] == []
    assert stage["explain"] == [] and stage["invoke"] == []
    assert "paris" in stage["answer"].lower()
    # A local-only request never imports a network provider's client either.
    assert stage["modules"] == []


def test_default_policy_without_credentials_stays_offline():
    stage = _run("default.yaml")
    assert stage["invoke"] == [] and "paris" in stage["answer"].lower()
