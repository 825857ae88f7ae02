"""An agent armed with the CLI and nothing else: it reads only JSON envelopes.

Usage: agent.py SKIFF SERVICE [MAX_STEPS]

Loop: ask `skiff doctor SERVICE --format json`; stop when its code is OK. Otherwise run
the first recommended action whose safety is allowed (read_only or reversible, never
irreversible) and which it has not tried since the last change, with `--format json`,
and look again. Every step is printed as one JSON line; the exit code is 0 when the
service ends healthy, 1 when the agent runs out of steps or actions.
"""
import json
import shlex
import subprocess
import sys
import time

ALLOWED = {"read_only", "reversible"}


def skiff(binary, args):
    if "--format" not in args:
        args = args + ["--format", "json"]
    out = subprocess.run([binary] + args, capture_output=True, text=True, timeout=600)
    try:
        envelope = json.loads(out.stdout)
    except json.JSONDecodeError:
        envelope = {"ok": False, "code": "NOT_JSON", "summary": out.stdout[:200], "recommended_actions": []}
    return out.returncode, envelope


def main():
    binary, service = sys.argv[1], sys.argv[2]
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    tried = set()
    for n in range(steps):
        code, doctor = skiff(binary, ["doctor", service])
        print(json.dumps({"step": n, "ran": f"skiff doctor {service}", "code": doctor["code"], "summary": doctor["summary"]}))
        if doctor["code"] == "OK":
            return 0
        actions = [a for a in doctor.get("recommended_actions", []) if a["safety"] in ALLOWED and a["command"] not in tried]
        if not actions:
            print(json.dumps({"step": n, "gave_up": "no allowed action left"}))
            return 1
        action = actions[0]
        tried.add(action["command"])
        args = shlex.split(action["command"])
        if args and args[0] == "skiff":
            args = args[1:]
        code, answer = skiff(binary, args)
        print(json.dumps({"step": n, "ran": action["command"], "safety": action["safety"], "code": answer["code"],
                          "summary": answer["summary"], "operation_id": answer.get("operation_id")}))
        if answer.get("ok") and action.get("mutating"):
            tried.clear()
        time.sleep(1)
    return 1


if __name__ == "__main__":
    sys.exit(main())
