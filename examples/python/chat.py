#!/usr/bin/env python3
"""chat.py - a Danube chat REPL with the Python binding: one user message per
line on stdin, the reply streamed to stdout.

    python3 examples/python/chat.py MODEL [--system TEXT] [-n MAX_REPLY_TOKENS]

"/reset" forgets the conversation; end of input (Ctrl-D) quits.
"""
import argparse
import os
import sys

try:
    import danu
except ImportError:   # not installed: use the binding next to this checkout
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bindings", "python"))
    import danu


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="HF directory or .gguf file")
    ap.add_argument("--system", help="system prompt")
    ap.add_argument("-n", type=int, default=256, help="max tokens per reply")
    args = ap.parse_args()

    try:
        model = danu.Model(args.model)
        # Danube chat settings; a full context drops old turns instead of failing.
        ctx = danu.Context(model, n_ctx=min(4096, model.context_length), temperature=0.7,
                           repeat_penalty=1.1, on_full="shift")
    except danu.DanuError as e:
        print("chat.py: %s" % e, file=sys.stderr)
        return 1

    system = [{"role": "system", "content": args.system}] if args.system else []
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        if line == "/reset":
            ctx.clear()
            system = [{"role": "system", "content": args.system}] if args.system else []
            print("[conversation cleared]")
            continue
        print("assistant: ", end="", flush=True)
        for piece in ctx.chat(system + [{"role": "user", "content": line}], max_tokens=args.n, stream=True):
            print(piece, end="", flush=True)
        print()
        system = []       # the context keeps it from now on
        if ctx.stop_reason == "length":
            print("[reply cut at %d tokens]" % args.n, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
