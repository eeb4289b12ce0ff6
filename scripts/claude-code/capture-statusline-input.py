#!/usr/bin/env python3
"""Capture the JSON the real Claude Code CLI passes to its statusLine command, offline.

Usage: capture-statusline-input.py CLAUDE_BIN HOME_DIR OUT_JSON [PROMPT]

Runs the CLI interactively (in a pseudo-terminal: the status line is drawn by the TUI
only, never in -p mode) with HOME=HOME_DIR against fake_anthropic.py on loopback, with a
statusLine command that saves its stdin; the prompt is answered by the fake API. Stops the
CLI once a captured document shows the session's cost above zero (the turn is done), or
after 240 s. Writes the last captured document to OUT_JSON; exit status 0 when one with a
cost was captured, 1 otherwise. Onboarding, folder trust and the API-key question are
pre-answered in HOME_DIR/.claude.json, as a user who used the CLI before has them.
Processes it starts (the fake API, the CLI) are stopped before it returns.
"""
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
API_KEY = "sk-ant-fake"


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    claude, home, out = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
    prompt = sys.argv[4] if len(sys.argv) > 4 else "say hi"
    work = os.path.join(home, "work")
    os.makedirs(os.path.join(home, ".claude"), exist_ok=True)
    os.makedirs(work, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="statusline-capture.")
    capture = os.path.join(tmp, "captured.json")
    settings_path = os.path.join(home, ".claude", "settings.json")
    settings = {}
    if os.path.exists(settings_path):
        with open(settings_path) as f:
            settings = json.load(f)
    settings["statusLine"] = {"type": "command", "command": f"cat > {capture}.part && mv {capture}.part {capture}; echo captured"}
    with open(settings_path, "w") as f:
        json.dump(settings, f, indent=2)
    state_path = os.path.join(home, ".claude.json")
    state = {}
    if os.path.exists(state_path):
        with open(state_path) as f:
            state = json.load(f)
    state.update({"hasCompletedOnboarding": True, "theme": "dark",
                  "customApiKeyResponses": {"approved": [API_KEY[-20:]], "rejected": []}})
    state.setdefault("projects", {})[work] = {"hasTrustDialogAccepted": True,
                                              "hasCompletedProjectOnboarding": True}
    with open(state_path, "w") as f:
        json.dump(state, f, indent=2)

    port_file = os.path.join(tmp, "port")
    fake = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "fake_anthropic.py"), "--port", "0",
         "--port-file", port_file, "--log", os.path.join(tmp, "fake.jsonl"), "--scenario", "text"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = None
    got = None
    try:
        deadline = time.time() + 20
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if time.time() > deadline:
                print("capture-statusline-input: the fake API did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        port = open(port_file).read().strip()
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TERM": "xterm-256color",
               "LANG": "C.UTF-8", "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
               "ANTHROPIC_API_KEY": API_KEY, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
               "DISABLE_AUTOUPDATER": "1"}
        if os.getuid() == 0:
            env["IS_SANDBOX"] = "1"
        pid, fd = pty.fork()
        if pid == 0:
            os.chdir(work)
            os.execve(claude, [claude, "--model", "claude-sonnet-4-5", prompt], env)
        deadline = time.time() + 240
        while time.time() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    os.read(fd, 65536)  # the TUI's screen; drained so it never blocks
                except OSError:
                    break
            try:
                with open(capture) as f:
                    doc = json.load(f)
            except (OSError, ValueError):
                continue
            got = doc
            if (doc.get("cost") or {}).get("total_cost_usd", 0) > 0:
                break
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        fake.kill()
        fake.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    if got is None:
        print("capture-statusline-input: the CLI never ran its statusLine command", file=sys.stderr)
        return 1
    with open(out, "w") as f:
        json.dump(got, f)
    return 0 if (got.get("cost") or {}).get("total_cost_usd", 0) > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
