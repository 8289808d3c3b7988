#!/usr/bin/env python3
"""test_examples.py - run one example program on a synthetic tiny-a model and
check what it prints (registered by examples/meson.build, suite "examples").

    test_examples.py CASE --danu PATH/danu --data tests/data [--exe PROGRAM] [--python-chat chat.py]

CASE: simple | simple_cpp (greedy text = the transformers golden, decoded by
`danu detokenize`), chat (piped stdin, C), chat_py (piped stdin, Python),
game_loop (on its own job system: no thread started by libdanu, the reply
equals `danu chat --greedy`, the frame-time distribution is printed; then
cancelled mid-reply, context rewound), npcs (8
forked characters in one batch: each greedy reply equals `danu chat` alone),
npc_action (a JSON Schema constraint in a game loop: every turn's reply is
JSON valid under the schema, and complete; also without a model path).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile


def run(cmd, stdin=None, env=None, timeout=120):
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=timeout)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    print("$ %s\n--- stdout\n%s\n--- stderr\n%s" % (" ".join(cmd), out, err))
    return p.returncode, out, err


def golden(data, name):
    g = {}
    with open(os.path.join(data, "golden", name + ".txt")) as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in ("prompt", "greedy"):
                g[parts[0]] = parts[1:]
    return g


def check(cond, what):
    if not cond:
        print("FAIL: " + what)
        sys.exit(1)
    print("ok: " + what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--danu", required=True, help="the danu CLI (writes the synthetic model)")
    ap.add_argument("--data", required=True, help="tests/data")
    ap.add_argument("--exe", help="the example program")
    ap.add_argument("--python-chat", help="examples/python/chat.py")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="danu-example-")
    try:
        model = os.path.join(tmp, "tiny-a.gguf")
        rc, _, _ = run([a.danu, "synth", "--config", "tiny-a", "--seed", "7", "--format", "gguf", model])
        check(rc == 0 and os.path.exists(model), "synthetic tiny-a written")

        if a.case in ("simple", "simple_cpp"):
            g = golden(a.data, "tiny-a.capital")
            prompt = "The capital of France is"
            rc, ref, _ = run([a.danu, "detokenize", "-m", model, "-p", " ".join(g["greedy"])])
            check(rc == 0 and ref.strip(), "golden greedy ids decoded")
            rc, out, _ = run([a.exe, model, prompt, str(len(g["greedy"])), "0"])
            check(rc == 0, "exit status 0")
            check(out.startswith(prompt) and len(out.strip()) > len(prompt), "prints the prompt and generated text")
            check(out[len(prompt):].strip() == ref.strip(), "greedy text equals the transformers golden")
        elif a.case == "chat":
            rc, out, _ = run([a.exe, model, "-n", "12", "--system", "Be brief."],
                             stdin=b"Hello there\n/reset\nWhat is your name?\n")
            check(rc == 0, "exit status 0 at end of input")
            replies = re.findall(r"^assistant: (.*)$", out, re.M)
            check(len(replies) == 2 and all(r.strip() for r in replies), "two non-empty replies")
            check("[conversation cleared]" in out, "/reset handled")
        elif a.case == "chat_py":
            env = dict(os.environ)
            rc, out, _ = run([sys.executable, a.python_chat, model, "-n", "12"], stdin=b"Hello there\n", env=env)
            check(rc == 0, "exit status 0 at end of input")
            replies = re.findall(r"^assistant: (.*)$", out, re.M)
            check(len(replies) == 1 and replies[0].strip(), "one non-empty reply")
        elif a.case == "game_loop":
            # The whole reply: on the program's own job system (libdanu starts no
            # thread), the text equals `danu chat`'s greedy reply to the same chat.
            rc, ref, _ = run([a.danu, "chat", "-m", model, "--greedy", "-n", "64", "--system",
                              "You are Brom, the village blacksmith. Answer in one sentence.",
                              "-p", "Can you mend my sword?"])
            check(rc == 0 and ref.endswith("\n"), "danu chat replied")
            rc, out, _ = run([a.exe, model, "--max-frames", "3000"], stdin=b"")
            check(rc == 0, "exit status 0")
            m = re.search(r"^Brom: (.*?)\nframe \d+: reply finished", out, re.S | re.M)
            check(m is not None, "the reply was printed and finished")
            check(m.group(1) == ref[:-1], "the reply equals danu chat's greedy reply")
            check(re.search(r"^model time per frame \((\d+) frames\): p50 [\d.]+ ms, p90 [\d.]+ ms, "
                            r"p99 [\d.]+ ms, max [\d.]+ ms$", out, re.M) is not None, "frame-time distribution printed")
            check(re.search(r"^over the 4\.00 ms budget: \d+ frames, by up to [\d.]+ ms \(mean [\d.]+ ms\)$", out,
                            re.M) is not None, "budget overruns printed")
            t = re.search(r"^threads: (\d+) before the model \(main \+ 2 workers\), (\d+) after: libdanu started "
                          r"(-?\d+)$", out, re.M)
            check(t is not None and t.group(1) == t.group(2) and t.group(3) == "0", "libdanu started no thread")
            m = re.search(r"frames (\d+), tokens (\d+), late frames (\d+), cancelled (\w+), context (\d+) tokens "
                          r"\(prompt (\d+)\)", out)
            check(m is not None, "summary line printed")
            frames, tokens, _, cancelled, n_ctx, n_prompt = m.groups()
            check(cancelled == "no" and 0 < int(tokens) <= 64, "%s tokens in %s frames" % (tokens, frames))
            check(int(n_ctx) == int(n_prompt) + int(tokens), "the context holds the prompt and the reply")

            # Cancelled 75 frames into the reply, one slice per frame (budget 0,
            # so the point of the cancel does not depend on the machine's speed;
            # a tiny-a token is about 25 slices, most of them the output layer).
            rc, out, _ = run([a.exe, model, "--budget-us", "0", "--cancel-after", "75", "--workers", "1"], stdin=b"")
            check(rc == 0, "exit status 0")
            m = re.search(r"frames (\d+), tokens (\d+), late frames (\d+), cancelled (\w+), context (\d+) tokens "
                          r"\(prompt (\d+)\)", out)
            check(m is not None, "summary line printed")
            frames, tokens, _, cancelled, n_ctx, n_prompt = m.groups()
            check(cancelled == "yes" and "reply cancelled" in out, "the reply was cancelled mid-way")
            check(0 < int(tokens) < 64, "tokens were generated before (%s in %s frames)" % (tokens, frames))
            check(n_ctx == n_prompt, "the half reply was removed from the context")
            check(re.search(r"libdanu started 0$", out, re.M) is not None, "libdanu started no thread")
        elif a.case == "npcs":
            n = 16
            p = subprocess.run([a.exe, model, "--max-tokens", str(n), "--temp", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=120)
            out = p.stdout
            print("$ npcs\n--- stdout\n%s\n--- stderr\n%s" % (out.decode("utf-8", "replace"),
                                                               p.stderr.decode("utf-8", "replace")))
            check(p.returncode == 0, "exit status 0")
            lines = out.split(b"\n")
            scene = [l[len(b"scene: "):] for l in lines if l.startswith(b"scene: ")]
            check(len(scene) == 1, "the scene is printed")
            replies = [re.match(rb"^(\w+) said \(([a-z ]+), (\d+) tokens\): (.*)$", l) for l in lines]
            replies = [m.groups() for m in replies if m]
            check(len(replies) == 8, "8 replies printed")
            personas = {}
            for l in lines:
                m = re.match(rb"^(\w+): (You are .*)$", l)
                if m:
                    personas[m.group(1)] = m.group(2)
            check(len(personas) == 8, "8 personas printed")
            for key in (b"shared prompt: ", b"fork: 8 characters in ", b"generation: "):
                check(any(l.startswith(key) for l in lines), "summary line " + key.decode())
            check(all(int(t) > 0 and r for _, _, t, r in replies), "every character said something")
            streamed = {}
            for l in lines:
                m = re.match(rb"^\[(\w+)\] (.*)$", l)
                if m:
                    streamed[m.group(1)] = streamed.get(m.group(1), b"") + m.group(2)
            for name, ending, tokens, reply in replies:
                who = name.decode()
                check(streamed.get(name, b"") == reply, who + ": the streamed pieces make the reply")
                check(ending in (b"token limit", b"end of text"), who + ": ended by the limit or EOS")
                check(ending != b"token limit" or int(tokens) == n, who + ": %d tokens at the limit" % n)
                # the same character alone: `danu chat` with the scene as system prompt
                ref = subprocess.run([a.danu, "chat", "-m", model, "--system", scene[0].decode(), "-p",
                                      personas[name].decode(), "-n", str(n), "--greedy", "-t", "2"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
                check(ref.returncode == 0, who + ": danu chat ran")
                text = ref.stdout[:-1] if ref.stdout.endswith(b"\n") else ref.stdout
                esc = b"".join(b"\\\\" if c == 0x5c else b"\\n" if c == 0x0a else
                               (b"\\x%02x" % c) if c < 0x20 or c == 0x7f else bytes([c]) for c in text)
                if esc != reply:
                    print("npcs printed %r\ndanu chat    %r" % (reply, esc))
                check(esc == reply, who + ": the reply equals danu chat's alone")
        elif a.case == "npc_action":
            verbs = ("attack", "defend", "talk", "trade", "flee")
            for args, env in (([model, "--turns", "3", "--seed", "2"], None),
                              (["--turns", "2", "--budget-us", "1000", "--temp", "1.0"],
                               dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache")))):
                rc, out, err = run([a.exe] + args, env=env)
                turns = int(args[args.index("--turns") + 1])
                check(rc == 0, "exit status 0")
                replies = re.findall(r"^Kara: (.*)$", out, re.M)
                check(len(replies) == turns, "%d replies" % turns)
                for r in replies:
                    try:
                        v = json.loads(r)
                    except ValueError:
                        v = None
                    check(isinstance(v, dict), "the reply is a JSON object: %r" % r)
                    check(v["action"] in verbs and isinstance(v["target"], str) and len(v["target"]) <= 20,
                          "action and target follow the schema: %r" % r)
                    check(set(v) <= {"action", "target", "say"} and len(v.get("say", "")) <= 60,
                          "no other members, say at most 60 characters: %r" % r)
                check(len(re.findall(r"^turn \d+: complete \((the JSON closed|end of text)\)", out, re.M)) == turns,
                      "every turn complete")
                check("turns %d, complete %d," % (turns, turns) in out, "summary printed")
                check(re.search(r"^model time per frame \(\d+ frames\): p50 [\d.]+ ms", out, re.M) is not None,
                      "frame times printed")
        else:
            check(False, "unknown case " + a.case)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
