#!/usr/bin/env python3
"""Tests of the danu command-line tool (issue 15, "the first hour of a new
user"): the real binary on tiny synthetic models made in a temporary
directory. Usage: test_cli.py --danu PATH [--data tests/data] [-k NAME]"""
import argparse
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

ARGS = None
TMP = None
GGUF = None
HF = None


def danu(*args, stdin=None, timeout=120):
    p = subprocess.run([ARGS.danu] + [str(a) for a in args], input=stdin, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# ---- 1. numbers are parsed strictly and checked before the model loads ----

BAD_NUMBERS = [
    # (command and arguments, the flag the one message must name)
    (["bench", "-m", "@GGUF", "-t", "0", "-p", "8", "-n", "4", "-r", "1"], "-t"),
    (["bench", "-m", "@GGUF", "-t", "abc", "-p", "8", "-n", "4", "-r", "1"], "-t"),
    (["bench", "-m", "@GGUF", "-t", "1,0", "-p", "8", "-n", "4", "-r", "1"], "-t"),
    (["bench", "-m", "@GGUF", "-r", "0", "-p", "8", "-n", "4"], "-r"),
    (["bench", "-m", "@GGUF", "-p", "8x"], "-p"),
    (["bench", "-m", "@GGUF", "--busy", "-1", "-p", "8", "-n", "4", "-r", "1"], "--busy"),
    (["bench", "-m", "@GGUF", "--busy", "x", "-p", "8", "-n", "4", "-r", "1"], "--busy"),
    (["bench", "-m", "@GGUF", "--contexts", "0", "-p", "8", "-n", "4", "-r", "1"], "--contexts"),
    (["bench", "-m", "@GGUF", "--contexts", "65", "-p", "8", "-n", "4", "-r", "1"], "--contexts"),
    (["bench", "-m", "@GGUF", "--slice-us", "-5", "-p", "8", "-n", "4", "-r", "1"], "--slice-us"),
    (["bench", "-m", "@GGUF", "--kv-type", "q4", "-p", "8", "-n", "4", "-r", "1"], "--kv-type"),
    (["bench", "-m", "@GGUF", "--kv-huge-pages", "yes", "-p", "8", "-n", "4", "-r", "1"], "--kv-huge-pages"),
    (["bench", "-m", "@GGUF", "--slice-us", "1.5", "-p", "8", "-n", "4", "-r", "1"], "--slice-us"),
    (["bench", "-m", "@GGUF", "--pool", "mine", "-p", "8", "-n", "4", "-r", "1"], "--pool"),
    (["bench", "-m", "@GGUF", "--seqs", "0", "-p", "8", "-n", "4", "-r", "1"], "--seqs"),
    (["bench", "-m", "@GGUF", "--seqs", "x", "-p", "8", "-n", "4", "-r", "1"], "--seqs"),
    (["bench", "-m", "@GGUF", "--seqs", "5000", "-p", "8", "-n", "4", "-r", "1"], "--seqs"),
    (["bench", "-m", "@GGUF", "--seqs", "1,,2", "-p", "8", "-n", "4", "-r", "1"], "--seqs"),
    (["bench", "-m", "@GGUF", "-p", "8", "-n", "4", "-r", "1", "--seqs"], "--seqs"),
    (["run", "-m", "@GGUF", "-n", "4", "--slice-us", "-5"], "--slice-us"),
    (["run", "-m", "@GGUF", "-n", "4", "--slice-us"], "--slice-us"),
    (["run", "-m", "@GGUF", "-n", "4", "--top-p", "5"], "--top-p"),
    (["run", "-m", "@GGUF", "-n", "4", "--temp", "-1"], "--temp"),
    (["run", "-m", "@GGUF", "-n", "4", "--top-k", "-3"], "--top-k"),
    (["run", "-m", "@GGUF", "-n", "4", "--min-p", "2"], "--min-p"),
    (["run", "-m", "@GGUF", "-n", "4", "--repeat-penalty", "-1"], "--repeat-penalty"),
    (["run", "-m", "@GGUF", "-n", "4", "-t", "abc"], "-t"),
    (["run", "-m", "@GGUF", "-n", "4", "-c", "-5"], "-c"),
    (["run", "-m", "@GGUF", "-n", "abc"], "-n"),
    (["run", "-m", "@GGUF", "-n", "-5"], "-n"),
    (["run", "-m", "@GGUF", "-n", "4", "--seed", "1.5"], "--seed"),
    (["run", "-m", "@GGUF", "-n", "4", "-b", "0"], "-b"),
    (["run", "-m", "@GGUF", "-n", "4", "--temp", "nan"], "--temp"),
    (["run", "-m", "@GGUF", "-n", "4", "--frequency-penalty", "1e9"], "--frequency-penalty"),
    (["run", "-m", "@GGUF", "-n", "4", "--sliding-window", "-2"], "--sliding-window"),
    (["run", "-m", "@GGUF", "-n", "4", "--on-full", "wrap"], "--on-full"),
    (["run", "-m", "/nonexistent/model.gguf", "--top-p", "5"], "--top-p"),
    (["generate", "-m", "@GGUF", "--tokens", "1 450", "-n", "-1"], "-n"),
    (["chat", "-m", "@GGUF", "-p", "hi", "--repeat-last-n", "-2"], "--repeat-last-n"),
    (["eval", "-m", "@GGUF", "--tokens", "1", "-o", "@TMP/x.f32", "-c", "x"], "-c"),
    (["info", "@GGUF", "-t", "-1"], "-t"),
    (["synth", "--config", "tiny-a", "--seed", "x", "@TMP/never.gguf"], "--seed"),
    (["quantize", "@GGUF", "@TMP/never.gguf", "--type", "q8_0", "-t", "abc"], "-t"),
]


def expand(args):
    return [a.replace("@GGUF", GGUF).replace("@TMP", TMP) for a in args]


def test_bad_numbers_exit_2_naming_the_flag():
    for args, flag in BAD_NUMBERS:
        rc, out, err = danu(*expand(args), stdin=b"")
        lines = err.strip().splitlines()
        what = "%s: rc %d, stderr %r" % (" ".join(args), rc, err)
        check(rc == 2, what)
        check(len(lines) == 1, what + ": one message")
        check(lines[0].startswith("danu %s: %s " % (args[0], flag)), what + ": names the flag")
        check(".." in lines[0] or "one of" in lines[0], what + ": gives the allowed values")
        check(out == "", what + ": nothing on stdout")


def test_good_numbers_run():
    rc, out, err = danu("run", "-m", GGUF, "-n", "4", "-t", "1", "-c", "64", "--top-p", "0.5", "--temp", "0.7",
                        "--top-k", "10", "--min-p", "0.1", "--repeat-penalty", "1.2", "--seed", "+9")
    check(rc == 0, "run with good values: rc %d %s" % (rc, err))


# ---- 2. chat ----

def test_chat_bad_utf8_line_reported_and_chat_goes_on():
    rc, out, err = danu("chat", "-m", GGUF, "-n", "4", "--seed", "1", stdin=b"caf\xe9\nhello\n")
    check(rc == 0, "rc %d: %s" % (rc, err))
    check("danu chat: line 1 is not valid UTF-8 (byte 3)" in err, err)
    check(len(out.splitlines()) == 1 and out.strip(), "one reply, to the second line: %r" % out)


def test_chat_full_context_shifts_keeping_the_system_prompt():
    rc, out, err = danu("chat", "-m", GGUF, "-c", "64", "-n", "30", "--ignore-eos", stdin=b"one\ntwo\nthree\n")
    check(rc == 0, "rc %d: %s" % (rc, err))
    check("context full" not in err, err)
    check(len(out.splitlines()) == 3, "three replies: %r" % out)
    rc, out, err = danu("chat", "-m", GGUF, "-c", "64", "-n", "30", "--ignore-eos", "--system", "be nice", "-v",
                        stdin=b"one\ntwo\nthree\n")
    check(rc == 0, "rc %d: %s" % (rc, err))
    keeps = [ln.split("keeping ")[1].split(" ")[0] for ln in err.splitlines() if "context full: keeping" in ln]
    check(keeps and all(int(k) > 1 and k == keeps[0] for k in keeps), "shifts keep the system prompt: %s" % err)
    rc, out, err = danu("chat", "-m", GGUF, "-c", "64", "-n", "30", "--ignore-eos", "--on-full", "error",
                        stdin=b"one\ntwo\nthree\n")
    check(rc == 0 and "context full" in err and "context full: context full" not in err,
          "--on-full error: one message per failed turn, the chat goes on: %s" % err)


def wait_for(path, text, proc, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
        if text(data):
            return data
        if proc.poll() is not None:
            raise AssertionError("danu chat ended (rc %s) before %s" % (proc.returncode, data))
        time.sleep(0.05)
    raise AssertionError("timed out waiting; got %r" % data)


def test_chat_ctrl_c_stops_the_reply_then_quits_at_the_prompt():
    out_path, err_path = os.path.join(TMP, "chat.out"), os.path.join(TMP, "chat.err")
    with open(out_path, "wb") as fo, open(err_path, "wb") as fe:
        p = subprocess.Popen([ARGS.danu, "chat", "-m", GGUF, "-c", "128", "-n", "100000000", "--ignore-eos"],
                             stdin=subprocess.PIPE, stdout=fo, stderr=fe)
    try:
        p.stdin.write(b"tell me everything\n")
        p.stdin.flush()
        wait_for(out_path, lambda d: len(d) > 200, p)
        p.send_signal(signal.SIGINT)
        wait_for(err_path, lambda d: "stopped" in d and d.rstrip(" ").endswith(">"), p)
        check(p.poll() is None, "still running after the first Ctrl-C")
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)   # at the prompt: quit
        rc = p.wait(timeout=30)
        check(rc == 0, "rc %d after Ctrl-C at the prompt" % rc)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# ---- 3. one message, one prefix, the command's name ----

def test_messages_have_one_prefix():
    rc, out, err = danu("generate", "-m", GGUF, "--tokens", "1 450 99999", "-n", "2")
    check(rc == 1 and err.startswith("danu generate: ") and "eval:" not in err and len(err.splitlines()) == 1, err)
    check("99999" in err, err)
    missing = os.path.join(TMP, "no-such-model.gguf")
    rc, out, err = danu("info", missing)
    check(rc == 1 and err.startswith("danu info: ") and err.count(missing) == 1, err)
    rc, out, err = danu("detokenize", "-m", GGUF, "-p", "1 99999")
    check(rc == 1 and err.startswith("danu detokenize: ") and err.count("decode") <= 1 and "danu: " not in err, err)
    out_q = os.path.join(TMP, "q.gguf")
    rc, out, err = danu("quantize", "-v", HF, out_q, "--type", "f16")
    check(rc == 0, err)
    lines = err.strip().splitlines()
    check(len(lines) > 1 and all(ln.startswith("danu quantize: ") for ln in lines), err)
    os.unlink(out_q)


# ---- 4. generation_config.json gives the sampling defaults ----

def test_generation_config_defaults():
    hf = os.path.join(TMP, "hf-genconfig")
    shutil.copytree(HF, hf)
    shutil.copy(os.path.join(ARGS.data, "danube", "generation_config.json"), hf)
    common = ["run", "-m", hf, "-p", "the the the the", "-n", "40", "--seed", "5", "--temp", "0"]
    rc, out, err = danu(*common, "-v")
    check(rc == 0 and "repetition_penalty 1.1 from" in err, err)
    rc, out_same, err = danu(*common, "--repeat-penalty", "1.1")
    check(rc == 0 and out == out_same, "defaults are 1.1: %r vs %r" % (out, out_same))
    rc, out_off, err = danu(*common, "--repeat-penalty", "1.0", "-v")
    check(rc == 0 and out_off != out, "the flag wins")
    check("the flag's 1 applies" in err, err)
    with open(os.path.join(hf, "generation_config.json"), "w") as f:
        f.write('{"a": {"b": [1, "x\\"}", null, true]}, "temperature": 0.5, "top_k": 7, "top_p": 3}')
    rc, out, err = danu("run", "-m", hf, "-n", "2", "-v")
    check(rc == 0 and "temperature 0.5 from" in err and "top_k 7 from" in err, err)
    check("top_p 3 is outside 0..1; ignored" in err, err)
    rc, out, err = danu("run", "-m", GGUF, "-n", "2", "-v")
    check("library's sampling defaults apply" in err, err)
    rc, out, err = danu("chat", "--help")
    check("generation_config.json" in out and "Danube chat uses 1.1" not in out, out)


# ---- 5. a flag for every load and context option ----

def test_every_option_has_a_flag():
    rc, out, err = danu("run", "-m", GGUF, "-v", "-n", "4", "--sliding-window", "16", "--kv-type", "f32",
                        "--n-keep", "4", "--on-full", "shift", "--isa", "scalar", "--repack", "off", "--validate",
                        "--no-mmap", "--seed", "3", "-b", "8", "--repeat-last-n", "16", "--frequency-penalty", "0.1",
                        "--presence-penalty", "0.1", "--ignore-eos", "-c", "32", "-t", "1", "--kv-f32", "--greedy")
    check(rc == 0, err)
    check("window 16" in err and "kernels scalar" in err, err)
    rc, out, err = danu("run", "-m", GGUF, "-n", "4", "--n-keep", "40", "-c", "32")
    check(rc == 2 and "--n-keep" in err, err)
    # the 8-bit KV cache reaches the library: the context logs fewer bytes than with f16
    sizes = {}
    for kv in ("f16", "q8_0"):
        rc, out, err = danu("run", "-m", GGUF, "-v", "-n", "4", "--greedy", "-c", "64", "--kv-type", kv)
        m = re.search(r"context: n_ctx 64, \d+ cached positions per layer, (\d+) bytes", err)
        check(rc == 0 and m, err)
        sizes[kv] = int(m.group(1))
    check(sizes["q8_0"] < sizes["f16"], sizes)
    # huge pages under the cache are a memory hint: the same greedy text either way
    texts = []
    for hp in ("off", "on"):
        rc, out, err = danu("run", "-m", GGUF, "-n", "8", "--greedy", "-c", "64", "--kv-huge-pages", hp, "-p", "Hello")
        check(rc == 0 and out, err)
        texts.append(out)
    check(texts[0] == texts[1], texts)
    rc, out, err = danu("bench", "-m", GGUF, "-p", "8", "-n", "4", "-d", "20", "-t", "1", "-r", "1", "--kv-type", "q8_0")
    check(rc == 0 and "KV cache q8_0" in out and "tg4 @ d20" in out, out + err)
    for cmd in ("run", "chat", "generate", "eval", "info", "bench"):
        rc, out, err = danu(cmd, "--help")
        check(rc == 0 and "--sliding-window" in out and "--isa" in out, "%s --help: %s" % (cmd, out))


# ---- 6. progress of a long prompt on a terminal ----

def run_on_pty(args):
    master, slave = pty.openpty()
    p = subprocess.Popen([ARGS.danu] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    data = b""
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    p.communicate(timeout=60)
    os.close(master)
    return p.returncode, data.decode("utf-8", "replace")


def test_long_prompt_progress_on_a_terminal():
    prompt = os.path.join(TMP, "prompt.txt")
    with open(prompt, "w") as f:
        f.write("one two three four five six seven eight nine ten " * 3)
    rc, err = run_on_pty(["run", "-m", GGUF, "-f", prompt, "-b", "8", "-n", "2"])
    check(rc == 0, err)
    check("prompt 8/" in err and "prompt 16/" in err, "progress per batch: %r" % err)
    rc, out, err = danu("run", "-m", GGUF, "-f", prompt, "-b", "8", "-n", "2")
    check(rc == 0 and "prompt 8/" not in err, "no progress when stderr is not a terminal: %r" % err)


# ---- issue 16: a busy machine, several contexts, work in slices ----

def test_run_slice_us_prints_the_same_text():
    prompt = os.path.join(TMP, "slice-prompt.txt")
    with open(prompt, "w") as f:
        f.write("one two three four five six seven eight nine ten " * 3)
    for src in (["-p", "The capital of France is"], ["-f", prompt]):
        common = ["run", "-m", GGUF, "--temp", "0", "-n", "40", "-t", "2"] + src
        rc, plain, err = danu(*common)
        check(rc == 0 and plain.strip(), "rc %d: %s" % (rc, err))
        for us in ("1000", "0"):
            rc, sliced, err = danu(*common, "--slice-us", us)
            check(rc == 0, "--slice-us %s: rc %d %s" % (us, rc, err))
            check(sliced == plain, "--slice-us %s prints the same text: %r vs %r" % (us, sliced, plain))
            check("calls of sliced work with a budget of %s us" % us in err, err)
            longest = float(err.split("longest ")[1].split(" ms")[0])
            check(0 < longest < 60000, "the calls are timed: %s" % err)
    rc, sliced, err = danu("run", "-m", GGUF, "--temp", "0", "-n", "0", "--slice-us", "1000")
    check(rc == 0 and sliced.strip() == "The capital of France is", "-n 0: the prompt only: %r %s" % (sliced, err))


def bench_rows(out):
    """The table rows of danu bench: lists of cells."""
    return [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in out.splitlines()
            if ln.startswith("|") and not ln.startswith("|--") and "threads" not in ln]


def test_bench_busy_and_contexts_print_rows_per_context():
    for pool in ("shared", "own"):
        args = ["bench", "-m", GGUF, "--busy", "1", "--contexts", "2", "-p", "8", "-n", "4", "-r", "1", "-t", "1,2",
                "--pool", pool]
        rc, out, err = danu(*args)
        check(rc == 0, "%s: rc %d %s" % (" ".join(args), rc, err))
        check("busy: 1 spinning thread of this program" in out, out)
        check("contexts: 2 on the model at once" in out, out)
        check(("one per context" if pool == "own" else "shared pool") in out, out)
        rows = {(r[0], r[1]): r for r in bench_rows(out)}
        for t in ("1", "2"):
            for test in ("pp8", "tg4"):
                per = [rows.get((t, "%s ctx%d" % (test, k))) for k in range(2)]
                total = rows.get(("2x" + t, test + " sum"))
                check(all(per) and total, "-t %s %s: rows per context and the sum: %s" % (t, test, out))
                rate = lambda r: float(r[2].split()[0])
                check(all(rate(r) > 0 for r in per) and abs(rate(total) - sum(rate(r) for r in per)) <= 0.02 * rate(total),
                      "the sum row adds the contexts: %s" % out)
        check(len(bench_rows(out)) == 12, "no other rows: %s" % out)


def test_bench_slice_us_prints_the_distribution():
    rc, out, err = danu("bench", "-m", GGUF, "--slice-us", "1000", "-p", "8", "-n", "4", "-r", "1", "-t", "1")
    check(rc == 0, "rc %d %s" % (rc, err))
    check("slices: " in out and "1000 us per call" in out, out)
    head = [ln for ln in out.splitlines() if ln.startswith("| threads")]
    check(head and all(c in head[0] for c in ("slices", "p50 ms", "p90 ms", "p99 ms", "max ms")), out)
    rows = bench_rows(out)
    check([r[1] for r in rows] == ["pp8", "tg4"], out)
    for r in rows:
        check(len(r) == 12, "the slice columns: %r" % r)
        calls, dist = int(r[7]), [float(x) for x in r[8:12]]
        check(calls >= (1 if r[1] == "pp8" else 4), "at least one call per token generated: %r" % r)
        check(dist == sorted(dist) and dist[0] >= 0, "p50 <= p90 <= p99 <= max: %r" % r)
    rc, out, err = danu("bench", "-m", GGUF, "-p", "8", "-n", "4", "-r", "1", "-t", "1")
    check(rc == 0 and "p50" not in out and all(len(r) == 7 for r in bench_rows(out)), "no slice columns without it: " + out)


# ---- issue 17: many sequences in one batch ----

SEQS_COLUMNS = ["threads", "PP", "TG", "S", "N_KV", "T_PP s", "S_PP t/s", "fork ms", "T_TG s", "S_TG t/s", "T s",
                "S t/s", "gen", "RSS MB", "ctx MB", "batch MB", "xS1", "xPP"]


def seqs_table(out):
    """The --seqs table: a dict per row, keyed by the header's column names."""
    head = [ln for ln in out.splitlines() if ln.startswith("| threads")]
    check(len(head) == 1, "one header: %s" % out)
    names = [c.strip() for c in head[0].strip().strip("|").split("|")]
    check(names == SEQS_COLUMNS, "the columns: %r" % names)
    return [dict(zip(names, r)) for r in bench_rows(out)]


def test_bench_seqs_prints_a_row_per_sequence_count():
    rc, out, err = danu("bench", "-m", GGUF, "--seqs", "1,3", "-p", "8", "-n", "4", "-r", "1")
    check(rc == 0, "rc %d %s" % (rc, err))
    rows = seqs_table(out)
    check([(r["threads"], r["S"]) for r in rows] == [("1", "1"), ("1", "3"), ("2", "1"), ("2", "3")],
          "a row per S and thread count (-t 1,2 by default): %s" % out)
    for r in rows:
        S = int(r["S"])
        check(r["PP"] == "8" and r["TG"] == "4", "PP and TG: %r" % r)
        check(int(r["gen"]) == S * 4, "every sequence generated -n tokens: %r" % r)
        check(int(r["N_KV"]) == 8 + S * 4, "N_KV = PP + S*TG: %r" % r)
        check(float(r["S_TG t/s"].split()[0]) > 0 and float(r["S_PP t/s"]) > 0, "rates: %r" % r)
        check(float(r["batch MB"]) > 0 and float(r["ctx MB"]) > 0 and float(r["RSS MB"]) > 0, "memory: %r" % r)
        check(float(r["fork ms"]) >= 0 and (S > 1 or float(r["fork ms"]) < 1), "fork time: %r" % r)
        check((S > 1 or r["xS1"] == "1") and float(r["xS1"]) > 0 and float(r["xPP"]) > 0,
              "ratios: %r" % r)
    # depth, no prompt, repetitions, spinning threads and a pool of its own
    rc, out, err = danu("bench", "-m", GGUF, "--seqs", "2", "-p", "0", "-d", "6", "-n", "3", "-r", "2", "-t", "1",
                        "--busy", "1", "--pool", "own")
    check(rc == 0, "rc %d %s" % (rc, err))
    check("busy: 1 spinning thread of this program" in out, out)
    rows = seqs_table(out)
    check(len(rows) == 1 and rows[0]["PP"] == "0 @ d6" and rows[0]["gen"] == "6" and rows[0]["xPP"] == "-",
          "-d 6 -p 0: %s" % out)
    rc, out, err = danu("bench", "-m", GGUF, "--seqs", "2", "--contexts", "2", "-p", "8", "-n", "4")
    check(rc == 2 and "--seqs" in err and "--contexts" in err, "not with --contexts: %s" % err)


# ---- issue 18: constrained output ----

ACTIONS = ["attack the goblin", "flee", "talk", "open the door"]
CHARACTER_SCHEMA = """{"type": "object",
 "properties": {"name": {"type": "string", "maxLength": 10},
                "level": {"type": "integer", "minimum": 1, "maximum": 60},
                "class": {"enum": ["mage", "rogue", "bard"]}},
 "required": ["name", "level", "class"]}"""


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_run_choice_outputs_one_of_the_choices():
    prompt = "The hero decides to"
    choice_args = [x for a in ACTIONS for x in ("--choice", a)]
    actions = write("actions.txt", "\n".join(ACTIONS) + "\n\n")
    for seed in ("1", "2", "3"):
        for how in (choice_args, ["--choice-file", actions], choice_args + ["--slice-us", "1000"]):
            rc, out, err = danu("run", "-m", GGUF, "-p", prompt, "-n", "32", "--seed", seed, *how)
            check(rc == 0, "rc %d: %s" % (rc, err))
            check(out.startswith(prompt) and out.endswith("\n"), out)
            check(out[len(prompt):-1] in ACTIONS, "one of the choices: %r" % out)
            check("constraint: stopped by grammar" in err or "constraint: stopped by eos" in err, err)


def test_run_json_schema_and_grammar_file():
    import json
    gbnf = write("yesno.gbnf", 'root ::= answer "!"\nanswer ::= "yes" | "no"  # a comment\n')
    rc, out, err = danu("run", "-m", GGUF, "-p", "Answer:", "-n", "16", "--grammar-file", gbnf)
    check(rc == 0 and out in ("Answer:yes!\n", "Answer:no!\n"), "rc %d: %r %s" % (rc, out, err))
    other_root = write("start.gbnf", 'start ::= "go"\n')
    rc, out, err = danu("run", "-m", GGUF, "-p", "Go:", "-n", "16", "--grammar-file", other_root,
                        "--grammar-root", "start")
    check(rc == 0 and out == "Go:go\n", "rc %d: %r %s" % (rc, out, err))
    rc, out, err = danu("grammar", "--help")
    check(rc == 0 and "--json-schema" in out, out)
    schema = write("character.schema.json", CHARACTER_SCHEMA)
    rc, out, err = danu("run", "-m", GGUF, "-p", "A character:", "-n", "200", "--seed", "4", "--json-schema", schema)
    check(rc == 0, "rc %d: %s" % (rc, err))
    value = json.loads(out[len("A character:"):])
    check(sorted(value) == ["class", "level", "name"] and 1 <= value["level"] <= 60, out)
    # danu grammar prints the GBNF a schema compiles to, which run takes as a grammar
    rc, out, err = danu("grammar", "--json-schema", schema)
    check(rc == 0 and "root ::=" in out, "rc %d: %s %s" % (rc, out, err))
    gbnf = write("character.gbnf", out)
    rc, out, err = danu("run", "-m", GGUF, "-p", "A character:", "-n", "200", "--seed", "4", "--grammar-file", gbnf)
    check(rc == 0 and sorted(json.loads(out[len("A character:"):])) == ["class", "level", "name"], out + err)


def test_constraint_errors():
    bad = write("bad.gbnf", 'root ::= "yes" |\n  "no\n')
    rc, out, err = danu("run", "-m", GGUF, "-p", "x", "-n", "8", "--grammar-file", bad)
    check(rc == 1, "rc %d: %s" % (rc, err))
    check(err.startswith("danu run: ") and "bad.gbnf" in err, err)
    check("line 2" in err.lower() or ":2:" in err, "names the line: %s" % err)
    check("column" in err.lower() or "col " in err.lower() or re_line_col(err), "names the column: %s" % err)
    check(out == "", "nothing generated: %r" % out)
    schema = write("refused.schema.json", '{"type": "string", "pattern": "^a+$"}')
    for args in (["run", "-m", GGUF, "-n", "8", "--json-schema", schema], ["grammar", "--json-schema", schema]):
        rc, out, err = danu(*args)
        check(rc == 1 and "refused.schema.json" in err, "%s: rc %d %s" % (args[0], rc, err))
        check("pattern" in err, "names the keyword: %s" % err)
    for args in (["--choice", "a", "--json-schema", schema], ["--grammar-file", bad, "--choice-file", bad],
                 ["--grammar-root", "x"], ["--choice", ""]):
        rc, out, err = danu("run", "-m", GGUF, "-n", "8", *args)
        check(rc == 2 and err.startswith("danu run: "), "%s: rc %d %s" % (args, rc, err))
    rc, out, err = danu("run", "-m", GGUF, "-n", "8", "--json-schema", os.path.join(TMP, "missing.json"))
    check(rc == 1 and "missing.json" in err, err)
    rc, out, err = danu("grammar")
    check(rc == 2 and "--json-schema" in err, err)


def re_line_col(text):
    import re
    return re.search(r"\d+:\d+", text) is not None


def test_bench_constraint():
    actions = write("actions-bench.txt", "\n".join(ACTIONS) + "\n")
    rc, out, err = danu("bench", "-m", GGUF, "--choice-file", actions, "-n", "16", "-r", "2", "-t", "1,2")
    check(rc == 0, "rc %d %s" % (rc, err))
    check("compile: median" in out and "mask: " in out, out)
    rows = bench_rows(out)
    check([r[0] for r in rows] == ["1", "2"], "a row per thread count: %s" % out)
    for r in rows:
        check(float(r[3]) > 0 and float(r[4]) > 0 and float(r[5]) > 0, "rates and ratio: %r" % r)
    mask = [float(x) for x in
            out.split("mean ")[1].replace("p50", "").replace("p99", "").replace("max", "").replace(" us", "").split(",")]
    check(len(mask) == 4 and mask[1] <= mask[2] <= mask[3] and mask[0] > 0, "mean, p50 <= p99 <= max: %s" % out)
    rc, out, err = danu("bench", "-m", GGUF, "--choice", "a", "--seqs", "2")
    check(rc == 2 and "--seqs" in err, err)


# ---- BOS once with --special ----

def test_special_bos_once():
    rc, out, err = danu("tokenize", "-m", GGUF, "--special", "-p", "<s>hi</s>")
    ids = out.split()
    check(rc == 0 and ids[0] == "1" and ids.count("1") == 1, out)
    rc, out, err = danu("tokenize", "-m", GGUF, "--special", "-p", "hi</s>")
    check(rc == 0 and out.split()[0] == "1" and out.split().count("1") == 1, out)
    rc, out, err = danu("tokenize", "-m", GGUF, "--special", "--no-bos", "-p", "hi")
    check(rc == 0 and out.split()[0] != "1", out)
    rc, out, err1 = danu("run", "-m", GGUF, "--special", "-p", "<s>hi", "-n", "1")
    rc2, out, err2 = danu("run", "-m", GGUF, "-p", "hi", "-n", "1")
    check(rc == 0 and rc2 == 0 and "prompt 2 tokens" in err1 and "prompt 2 tokens" in err2, err1 + err2)


def main():
    global ARGS, TMP, GGUF, HF
    ap = argparse.ArgumentParser()
    ap.add_argument("--danu", required=True)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data"))
    ap.add_argument("-k", default="")
    ARGS = ap.parse_args()
    TMP = tempfile.mkdtemp(prefix="danu-cli-")
    passed = failed = 0
    try:
        GGUF = os.path.join(TMP, "m.gguf")
        HF = os.path.join(TMP, "hf")
        for fmt, out, ty in (("gguf", GGUF, "q4_0"), ("hf", HF, "bf16")):
            rc, _, err = danu("synth", "--config", "tiny-a", "--seed", "3", "--format", fmt, "--type", ty, out)
            if rc:
                print("cannot make the test model: " + err)
                print("0 passed, 1 failed")
                return 1
        tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and ARGS.k in n]
        for name, fn in tests:
            try:
                fn()
                passed += 1
                print("PASS " + name)
            except Exception:
                failed += 1
                print("FAIL " + name)
                traceback.print_exc(file=sys.stdout)
            sys.stdout.flush()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
