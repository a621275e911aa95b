#!/usr/bin/env python3
"""An r1 reward checker as an external command (any language works; this one is Python).

r1 starts it once and keeps it running. Each request is one JSON line on stdin:
  {"id": 7, "prompt": "...", "completion": "...", "reference": {...}, "metadata": {...},
   "completion_tokens": 12 or null, "options": {...}}
and the answer is one JSON line on stdout with the same id:
  {"id": 7, "score": 1.0, "parts": {"hits": 2}, "reason": "..."}   or   {"id": 7, "error": "why"}
Flush after every line. Test hooks: "CRASH" exits, "HANG" sleeps forever (r1 kills it on timeout).
"""
import json
import sys
import time

for line in sys.stdin:
    req = json.loads(line)
    text = req["completion"]
    if "CRASH" in text:
        sys.exit(3)
    if "HANG" in text:
        time.sleep(3600)
    words = req.get("options", {}).get("keywords", ["therefore"])
    hits = sum(text.lower().count(w.lower()) for w in words)
    resp = {"id": req["id"], "score": 1.0 if hits else 0.0, "parts": {"hits": hits},
            "reason": f"{hits} keyword hits"}
    sys.stdout.write(json.dumps(resp) + "\n")
    sys.stdout.flush()
