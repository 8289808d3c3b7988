"""Tests of the Python binding against independent references: the transformers
goldens (tests/data/golden), SentencePiece's cases (tests/data/llama2-tokenizer)
and include/danu.h itself (the ctypes declarations must match the header).

Run by meson (suite "bindings") with DANU_LIBRARY set, or by hand:
    DANU_LIBRARY=build/lib/libdanu.so python3 bindings/python/tests/test_danu.py
"""
import ctypes
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("DANU_SOURCE_ROOT") or os.path.normpath(os.path.join(HERE, "..", "..", ".."))
DATA = os.path.join(ROOT, "tests", "data")
sys.path.insert(0, os.path.join(HERE, ".."))

import danu            # noqa: E402
from danu import _lib  # noqa: E402

TMP = None
MODEL_PATH = None


def setUpModule():
    global TMP, MODEL_PATH
    TMP = tempfile.mkdtemp(prefix="danu-py-")
    MODEL_PATH = os.path.join(TMP, "tiny-a.gguf")
    danu.synth_write(MODEL_PATH, os.path.join(DATA, "llama2-tokenizer", "tokenizer.model"), "tiny-a", 7, "gguf",
                     "bf16")


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def golden(name):
    g = {"top": {}}
    with open(os.path.join(DATA, "golden", name + ".txt")) as f:
        for line in f:
            parts = line.split()
            if not parts or parts[0] == "#":
                continue
            if parts[0] in ("prompt", "greedy"):
                g[parts[0]] = [int(x) for x in parts[1:]]
            elif parts[0] == "top":
                g["top"][int(parts[1])] = [(int(a), float(b)) for a, b in (p.split(":") for p in parts[2:])]
    return g


# ---- the ctypes declarations vs include/danu.h -------------------------------------------

def parse_header(path):
    """DANU_API prototypes -> {name: (ret, [param types])}, callback typedefs,
    enumerators and struct members, from the header text."""
    with open(path) as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = "\n".join(l for l in text.split("\n") if not l.strip().startswith("#"))
    flat = " ".join(text.split())
    funcs = {}
    for m in re.finditer(r"DANU_API ([^;]*?)\b(danu_\w+)\s*\(([^;]*)\)\s*;", flat):
        params = [] if m.group(3).strip() == "void" else [p.strip() for p in m.group(3).split(",")]
        funcs[m.group(2)] = (m.group(1).strip(), params)
    callbacks = {}
    for m in re.finditer(r"typedef ([^;(]*?)\(\s*\*\s*(danu_\w+)\s*\)\s*\(([^;]*)\)\s*;", flat):
        callbacks[m.group(2)] = (m.group(1).strip(), [p.strip() for p in m.group(3).split(",")])
    enums = {}
    for body in re.findall(r"enum\s*\{([^}]*)\}", flat):
        for item in body.split(","):
            if "=" in item:
                k, v = item.split("=")
                enums[k.strip()] = int(v.strip(), 0)
    structs = {}
    for name, body in re.findall(r"typedef struct (\w+) \{([^}]*)\}", flat):
        members = []
        for decl in body.split(";"):
            decl = decl.strip()
            if decl:
                m = re.search(r"\(\s*\*\s*(\w+)\s*\)", decl)
                members.append(m.group(1) if m else re.findall(r"\w+", decl)[-1])
        structs[name] = members
    return funcs, callbacks, enums, structs


SCALARS = {"int32_t": ctypes.c_int32, "uint32_t": ctypes.c_uint32, "int64_t": ctypes.c_int64,
           "uint64_t": ctypes.c_uint64, "size_t": ctypes.c_size_t, "float": ctypes.c_float,
           "double": ctypes.c_double, "danu_status": ctypes.c_int32, "danu_param": ctypes.c_int32,
           "danu_info": ctypes.c_int32, "danu_token": ctypes.c_int32}
OPAQUE = {"danu_options", "danu_pool", "danu_model", "danu_tokenizer", "danu_context", "danu_decoder", "danu_batch",
          "danu_constraint"}


def expected_ctype(decl):
    """The ctypes type a C parameter or return type must map to."""
    decl = decl.strip()
    # drop the parameter name (last identifier, unless the declaration is a bare type)
    m = re.match(r"^(.*?[\s*])(\w+)$", decl)
    if m and m.group(2) not in SCALARS and m.group(2) not in ("void", "char") \
            and m.group(2) not in OPAQUE and m.group(2) not in _lib.CALLBACK_TYPES:
        decl = m.group(1)
    stars = decl.count("*")
    const_base = decl.startswith("const ")
    base = re.sub(r"\bconst\b", " ", decl).replace("*", " ").split()   # not the const in danu_constraint
    assert len(base) == 1, decl
    base = base[0]
    if stars == 0:
        if base == "void":
            return None
        if base in _lib.CALLBACK_TYPES:
            return _lib.CALLBACK_TYPES[base]
        return SCALARS[base]
    if stars == 1:
        if base in OPAQUE or base == "void":
            return ctypes.c_void_p
        if base == "char":
            return ctypes.c_char_p if const_base else ctypes.POINTER(ctypes.c_char)
        if base == "danu_allocator":
            return ctypes.POINTER(_lib.Allocator)
        if base == "danu_batch_item":
            return ctypes.POINTER(_lib.BatchItem)
        return ctypes.POINTER(SCALARS[base])
    if stars == 2:
        if base in OPAQUE:
            return ctypes.POINTER(ctypes.c_void_p)
        if base == "char":
            return ctypes.POINTER(ctypes.c_char_p)
    raise AssertionError("no ctypes mapping for C type %r" % decl)


class TestDeclarations(unittest.TestCase):
    """A header change the binding misses fails here."""

    @classmethod
    def setUpClass(cls):
        cls.funcs, cls.callbacks, cls.enums, cls.structs = parse_header(os.path.join(ROOT, "include", "danu.h"))

    def test_every_function_declared(self):
        self.assertGreater(len(self.funcs), 50)
        self.assertEqual(sorted(self.funcs), sorted(_lib.PROTOTYPES))

    def test_signatures(self):
        lib = _lib.get()
        for name, (ret, params) in self.funcs.items():
            with self.subTest(function=name):
                restype, argtypes = _lib.PROTOTYPES[name]
                self.assertIs(restype, expected_ctype(ret), "return type of %s" % name)
                self.assertEqual(len(argtypes), len(params), "argument count of %s" % name)
                for i, (have, c) in enumerate(zip(argtypes, params)):
                    self.assertIs(have, expected_ctype(c), "%s argument %d (%s)" % (name, i, c))
                if name not in lib.danu_missing:
                    fn = getattr(lib, name)
                    self.assertIs(fn.restype, restype)
                    self.assertEqual(tuple(fn.argtypes), tuple(argtypes))

    def test_callbacks(self):
        self.assertEqual(sorted(self.callbacks), sorted(_lib.CALLBACK_TYPES))
        for name, (ret, params) in self.callbacks.items():
            with self.subTest(callback=name):
                cb = _lib.CALLBACK_TYPES[name]
                self.assertIs(cb._restype_, expected_ctype(ret))
                self.assertEqual(len(cb._argtypes_), len(params))
                for have, c in zip(cb._argtypes_, params):
                    self.assertIs(have, expected_ctype(c), "%s: %s" % (name, c))

    def test_allocator_struct(self):
        self.assertEqual([f[0] for f in _lib.Allocator._fields_], self.structs["danu_allocator"])

    def test_batch_item_struct(self):
        self.assertEqual([f[0] for f in _lib.BatchItem._fields_], self.structs["danu_batch_item"])
        # the member types, from the header's declarations
        with open(os.path.join(ROOT, "include", "danu.h")) as f:
            body = re.search(r"typedef struct danu_batch_item \{(.*?)\}", f.read(), re.S).group(1)
        decls = [d.strip() for d in re.sub(r"/\*.*?\*/", " ", body, flags=re.S).split(";") if d.strip()]
        for (name, ctype), decl in zip(_lib.BatchItem._fields_, decls):
            base = decl.rsplit(None, 1)[0] if "*" not in decl else decl[:decl.rindex("*") + 1]
            want = {"size_t": ctypes.c_size_t, "danu_context *": ctypes.c_void_p,
                    "char *": ctypes.POINTER(ctypes.c_char), "danu_token": ctypes.c_int32,
                    "int32_t": ctypes.c_int32, "danu_status": ctypes.c_int32}[" ".join(base.split())]
            self.assertIs(ctype, want, name)

    def test_constants(self):
        checked = 0
        for attr in dir(danu):
            if attr.isupper() and "DANU_" + attr in self.enums:
                self.assertEqual(getattr(danu, attr), self.enums["DANU_" + attr], attr)
                checked += 1
        for key, value in list(danu.INFO.items()) + list(danu.FLOAT_INFO.items()):
            self.assertEqual(value, self.enums["DANU_INFO_" + key.upper()], key)
        for cls in danu._ERRORS.values():
            name = [k for k, v in self.enums.items() if k.startswith("DANU_ERR_") and v == cls.status]
            self.assertEqual(len(name), 1, cls.__name__)
        self.assertGreater(checked, 30)


# ---- behaviour ------------------------------------------------------------------------

class TestModel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = danu.Model(MODEL_PATH)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def ctx(self, **kw):
        kw.setdefault("temperature", 0)
        kw.setdefault("n_ctx", 128)
        kw.setdefault("threads", 2)
        return danu.Context(self.model, **kw)

    def test_info(self):
        self.assertEqual(self.model.vocab_size, 32000)
        self.assertEqual(self.model.bos, 1)
        self.assertEqual(self.model.eos, 2)
        self.assertEqual(self.model.info("format"), danu.FORMAT_GGUF)
        names = [t[0] for t in self.model.tensors()]
        self.assertIn("token_embd.weight", names)

    def test_greedy_matches_transformers(self):
        g = golden("tiny-a.capital")
        with self.ctx() as c:
            c.eval(g["prompt"])
            text = "".join(c.generate(len(g["greedy"])))
            self.assertEqual(c.tokens[len(g["prompt"]):], g["greedy"])
            self.assertEqual(c.stop_reason, "length")
            self.assertEqual(text, self.model.tokenizer.decode(g["prompt"][-1:] + g["greedy"])[
                len(self.model.tokenizer.decode(g["prompt"][-1:])):])

    def test_logits_match_transformers(self):
        g = golden("tiny-a.capital")
        with self.ctx() as c:
            self.assertIsNone(c.logits)
            c.eval(g["prompt"])
            logits = c.logits
            self.assertEqual(len(logits), 32000)
            last = g["top"][len(g["prompt"]) - 1]
            for tid, value in last:
                self.assertAlmostEqual(logits[tid], value, delta=0.02)
            self.assertEqual(max(range(len(logits)), key=logits.__getitem__), g["greedy"][0])
            rows = c.eval([g["greedy"][0]], all_logits=True)
            self.assertEqual(len(rows), 1)
            self.assertEqual(list(rows[0]), list(c.logits))

    def test_step_and_sample(self):
        g = golden("tiny-a.capital")
        with self.ctx() as c:
            c.eval(g["prompt"])
            self.assertEqual(c.sample(), g["greedy"][0])
            st = c.step()
            self.assertEqual((st.token, st.reason), (g["greedy"][0], None))
            self.assertEqual(len(c), len(g["prompt"]) + 1)

    def test_stop_string(self):
        g = golden("tiny-a.capital")
        with self.ctx() as c:
            c.eval(g["prompt"])
            full = "".join(c.generate(12))
            stop = full[8:12]
            c.rewind(len(g["prompt"]) - 1)
            c.eval(g["prompt"][-1:])
            text = "".join(c.generate(12, stop=[stop]))
            self.assertEqual(c.stop_reason, "stop")
            self.assertEqual(text, full[:full.index(stop)])

    def test_stop_string_never_completed(self):
        # a stop string that starts with the text's end but never completes:
        # the held-back tail still arrives when the length limit ends the loop
        g = golden("tiny-a.capital")
        with self.ctx() as c:
            c.eval(g["prompt"])
            full = "".join(c.generate(12))
            c.rewind(len(g["prompt"]) - 1)
            c.eval(g["prompt"][-1:])
            text = "".join(c.generate(12, stop=[full[-2:] + "\x01\x02"]))
            self.assertEqual(c.stop_reason, "length")
            self.assertEqual(text, full)

    def test_seeded_sampling_repeats(self):
        g = golden("tiny-a.capital")
        runs = []
        for _ in range(2):
            with self.ctx(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=1234) as c:
                c.eval(g["prompt"])
                list(c.generate(10))
                runs.append(c.tokens)
        self.assertEqual(runs[0], runs[1])
        self.assertNotEqual(runs[0][6:], g["greedy"][:10])   # really sampled, not greedy

    def test_state_round_trip(self):
        g = golden("tiny-a.capital")
        with self.ctx(temperature=0.9, seed=5) as c:
            c.eval(g["prompt"])
            state = c.save_state()
            first = "".join(c.generate(8)), c.tokens
            c.load_state(state)
            self.assertEqual(c.tokens, g["prompt"])
            self.assertEqual("".join(c.generate(8)), first[0])
            self.assertEqual(c.tokens, first[1])
            path = os.path.join(TMP, "state.bin")
            c.clear()
            c.eval(g["prompt"])
            c.save_state_file(path)
            with self.ctx() as d:
                d.load_state_file(path)
                self.assertEqual(d.tokens, g["prompt"])
                list(d.generate(4))
                self.assertEqual(d.tokens[6:], g["greedy"][:4])
            with self.assertRaises(danu.FormatError):
                c.load_state(b"DANUSTAT" + bytes(40))
            self.assertEqual(c.tokens, g["prompt"])     # unchanged after the failure

    def test_chat(self):
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}]
        ids = self.model.tokenizer.chat_encode(msgs)
        self.assertEqual(ids[0], 1)
        with self.ctx() as c:
            reply = c.chat(msgs, max_tokens=10)
            self.assertEqual(c.tokens[:len(ids)], ids)
            with self.ctx() as d:          # the same reply through eval + generate
                d.eval(ids)
                self.assertEqual("".join(d.generate(10)), reply)
            n = len(c)
            pieces = list(c.chat([("user", "And at night?")], max_tokens=5, stream=True))
            self.assertGreater(len(c), n)
            self.assertTrue(all(isinstance(p, str) for p in pieces))

    def test_abort_from_another_thread(self):
        g = golden("tiny-a.capital")
        with self.ctx(on_full="shift", n_ctx=64) as c:
            c.eval(g["prompt"])
            timer = threading.Timer(0.2, c.abort)
            timer.start()
            t0 = time.time()
            n = sum(1 for _ in c.generate(10 ** 6))
            timer.join()
            self.assertEqual(c.stop_reason, "aborted")
            self.assertLess(time.time() - t0, 60)
            self.assertGreater(n, 0)
            c.eval([g["greedy"][0]])          # still usable

    def test_abort_then_resume(self):
        # an abort ends generation with stop reason "aborted" (no exception);
        # generating again resumes: greedy, the same tokens and text as one run
        g = golden("tiny-a.capital")
        n = len(g["greedy"])
        with self.ctx() as c:
            c.eval(g["prompt"])
            text = ""
            for piece in c.generate(n):
                text += piece
                if len(c) - len(g["prompt"]) >= 3:
                    c.abort()
            self.assertEqual(c.stop_reason, "aborted")
            done = len(c) - len(g["prompt"])
            self.assertEqual(c.tokens[len(g["prompt"]):], g["greedy"][:done])
            self.assertIsNotNone(c.logits)           # as before the aborted token
            text += "".join(c.generate(n - done))
            self.assertEqual(c.stop_reason, "length")
            self.assertEqual(c.tokens[len(g["prompt"]):], g["greedy"])
            with self.ctx() as d:
                d.eval(g["prompt"])
                self.assertEqual(text, "".join(d.generate(n)))
            # the step form reports it the same way
            c.abort()
            st = c.step()
            self.assertEqual(st.reason, "aborted")
            self.assertEqual(c.tokens[len(g["prompt"]):], g["greedy"])

    def test_checkpoint(self):
        g = golden("tiny-a.capital")
        P = len(g["prompt"])
        with self.ctx(n_ctx=128) as c:           # tiny-a: sliding window 32
            c.eval(g["prompt"])
            at_prompt = c.logits
            cp = c.checkpoint(keep_state=False)   # rewinding suffices within the window
            for _ in range(2):                    # the same reply each time from the checkpoint
                list(c.generate(5))
                self.assertEqual(c.tokens[P:], g["greedy"][:5])
                cp.restore()
                self.assertEqual(c.tokens, g["prompt"])
                self.assertEqual(c.logits, at_prompt)        # bit for bit
            # scoring candidates: logits=False leaves the re-evaluation to the next eval
            cands = [g["greedy"][:4], [450, 7483, 310], g["greedy"][:2]]
            rows = []
            for cand in cands:
                rows.append(c.eval(cand, all_logits=True))
                cp.restore(logits=False)
                self.assertEqual(c.tokens, g["prompt"])
            with self.ctx(n_ctx=128) as d:
                for cand, got in zip(cands, rows):
                    d.clear()
                    d.eval(g["prompt"])
                    self.assertEqual(d.eval(cand, all_logits=True), got)
            self.assertIsNone(c.logits)
            cp.restore()
            self.assertEqual(c.logits, at_prompt)
            # past the window rewinding is refused: the saved state brings it back
            with c.checkpoint() as cp2:
                c.eval(list(range(100, 140)))
            self.assertEqual(c.tokens, g["prompt"])
            self.assertEqual(c.logits, at_prompt)
            c.eval(list(range(100, 140)))
            with self.assertRaises(danu.StateError):
                cp.restore()
            cp2.restore()
            self.assertEqual(c.tokens, g["prompt"])
            list(c.generate(5))
            self.assertEqual(c.tokens[P:], g["greedy"][:5])

    def test_errors(self):
        with self.assertRaises(danu.DanuIOError) as e:
            danu.Model(os.path.join(TMP, "missing.gguf"))
        self.assertEqual(e.exception.status, 3)
        self.assertIn("missing.gguf", e.exception.detail)
        self.assertIn("missing.gguf", str(e.exception))
        with self.ctx() as c:
            with self.assertRaises(danu.BadTokenError) as e:
                c.eval([1, 32000])
            self.assertEqual(e.exception.status, 9)
            self.assertIn("32000", e.exception.detail)
            self.assertEqual(len(c), 0)
            with self.assertRaises(danu.StateError):
                c.sample()                    # nothing evaluated yet
            with self.assertRaises(danu.BadTokenError):
                self.model.tokenizer.decode([-1])
        with self.assertRaises(danu.InvalidArgumentError):
            self.ctx(temperature=-1.0)
        with self.assertRaises(danu.UnsupportedError):
            self.ctx(no_such_option=1)
        with self.assertRaises(danu.BadUtf8Error):
            self.model.tokenizer.encode(b"\xff\xfe")
        self.assertTrue(issubclass(danu.BadTokenError, danu.DanuError))

    def test_exception_hierarchy(self):
        missing = os.path.join(TMP, "missing.gguf")
        with self.assertRaises(FileNotFoundError) as e:      # a missing model is a FileNotFoundError...
            danu.Model(missing)
        self.assertIsInstance(e.exception, danu.DanuIOError)  # ...and a DanuIOError, an OSError
        self.assertIsInstance(e.exception, danu.DanuError)
        self.assertEqual((e.exception.errno, e.exception.filename, e.exception.status), (2, missing, 3))
        self.assertIn("missing.gguf", str(e.exception))
        self.assertTrue(issubclass(danu.DanuIOError, OSError))
        with self.assertRaises(FileNotFoundError):
            danu.Tokenizer(missing)
        with self.ctx() as c, self.assertRaises(FileNotFoundError):
            c.load_state_file(missing)
        with self.assertRaises(OSError) as e:                 # exists but is no file: IO, not FileNotFound
            danu.Model(os.path.join(DATA, "llama2-tokenizer", "tokenizer.model", "x"))
        self.assertIsInstance(e.exception, danu.DanuIOError)
        # an unknown info key: a DanuError (and a KeyError) naming the valid keys
        with self.assertRaises(danu.UnknownKeyError) as e:
            self.model.info("x")
        self.assertIsInstance(e.exception, KeyError)
        self.assertIsInstance(e.exception, danu.DanuError)
        self.assertIn("vocab", str(e.exception))
        self.assertIn("rope_theta", str(e.exception))
        with self.assertRaises(danu.UnsupportedError):
            self.model.info(9999)

    def test_argument_checks(self):
        g = golden("tiny-a.capital")
        with self.ctx() as c:
            c.eval(g["prompt"])
            for bad in (-5, -1, 2 ** 31, 1.5, "3"):
                with self.assertRaises(danu.InvalidArgumentError) as e:   # a ValueError
                    list(c.generate(bad))
                self.assertIn("max_tokens", str(e.exception))
                with self.assertRaises(ValueError):
                    c.chat([("user", "hi")], max_tokens=bad)
            self.assertEqual(c.tokens, g["prompt"])       # the refused chat appended nothing
            self.assertEqual(list(c.generate(0)), [])
            self.assertEqual(c.stop_reason, "length")
            lo, hi = danu.param_bounds("seed")
            for seed in (2 ** 64 + 5, 2 ** 70, -1, int(hi) + 1, 2 ** 63):
                with self.assertRaises(danu.InvalidArgumentError) as e:
                    c.set(seed=seed)
                self.assertIn("seed", str(e.exception))
                with self.assertRaises(ValueError):
                    self.ctx(seed=seed)
            c.set(seed=int(hi))
            with self.assertRaises(danu.InvalidArgumentError):
                self.ctx(n_ctx=2 ** 64 + 16)

    def test_callbacks(self):
        messages = []
        m = danu.Model(MODEL_PATH, log=lambda level, msg: messages.append((level, msg)))
        c = danu.Context(m, n_ctx=32, threads=1)   # no log of its own: uses the model's
        self.assertTrue(any("layers" in msg for _, msg in messages), messages)
        self.assertTrue(any("context" in msg for _, msg in messages), messages)
        m.close()
        self.assertIsNone(c._h)                    # closing the model closed its context
        fractions = []
        with self.assertRaises(danu.CancelledError):
            danu.Model(MODEL_PATH, progress=lambda f: fractions.append(f) or True)
        self.assertTrue(fractions)

    def test_model_freed_after_its_contexts(self):
        # the garbage collector finalizes a model and its context in any order
        # when both are in cycles (model <-> its tokenizer); the context was
        # freed after its model (a use after free in danu_context_free)
        import gc
        for _ in range(5):
            m = danu.Model(MODEL_PATH)
            m.tokenizer
            c = danu.Context(m, n_ctx=32, threads=1)
            c.eval([1, 5, 6])
            c.step()
            b = danu.Batch(m, 2)
            c.me = c
            b.me = b
            del m, c, b
            gc.collect()
        # what happens there, step by step: a context the model cannot reach
        # (its weak reference cleared) delays the model's free until it is closed
        m = danu.Model(MODEL_PATH)
        c = danu.Context(m, n_ctx=32, threads=1)
        m._contexts.discard(c)
        m.close()
        self.assertIsNone(m._h)
        self.assertIsNotNone(m._children.model_h)      # waiting for c
        c.eval([1, 5])                                 # the model is still there for it
        c.close()
        self.assertIsNone(m._children.model_h)         # freed with the last context
        self.assertEqual(m._children.open, 0)

    def test_options(self):
        lo, hi = danu.param_bounds("temperature")
        self.assertEqual((lo, hi), (0.0, 100.0))
        with self.ctx(kv_type="f32", top_k=5.0, repeat_penalty=1, on_full="shift") as c:
            c.set(temperature=0.5, top_k=3, seed=9)
            with self.assertRaises(danu.UnsupportedError):
                c.set(n_threads=3)            # fixed at creation
            c.set_logit_bias(5, -100.0)
            self.assertGreater(c.memory_size, 0)
        # the 8-bit KV cache: smaller than f16, and it evaluates
        with self.ctx(kv_type="f16", n_ctx=64) as f16, self.ctx(kv_type="q8_0", n_ctx=64) as q8:
            self.assertLess(q8.memory_size, f16.memory_size)
            q8.eval([1, 5, 9])
            self.assertEqual(q8.tokens, [1, 5, 9])

    def test_repack(self):
        self.assertEqual(danu.param_bounds("repack"), (-1.0, 1.0))
        with danu.Model(MODEL_PATH, repack="off") as m:
            self.assertEqual(m.info("repacked_matrices"), 0)
            self.assertEqual(m.info("repacked_bytes"), 0)
        with danu.Model(MODEL_PATH, repack="on") as m:   # bf16 tiny-a: every layer matrix has an x16 form
            self.assertGreater(m.info("repacked_matrices"), 0)
            self.assertGreater(m.info("repacked_bytes"), 0)
        with self.assertRaises(danu.InvalidArgumentError):
            danu.Model(MODEL_PATH, repack="sometimes")

    def test_fast_bf16(self):
        self.assertEqual(danu.param_bounds("fast_bf16"), (0.0, 1.0))
        with danu.Model(MODEL_PATH, fast_bf16=True) as m:   # a load option: loads and evaluates
            with danu.Context(m, n_ctx=16, temperature=0) as c:
                c.eval([1, 50, 60])
        with self.assertRaises(danu.InvalidArgumentError):
            danu.Model(MODEL_PATH, fast_bf16=2)


class TestSlicesAndPools(unittest.TestCase):
    """libdanu 0.2: work in slices and thread pools, each checked against the
    blocking call on the default pool (its results are the reference)."""

    @classmethod
    def setUpClass(cls):
        cls.model = danu.Model(MODEL_PATH)
        cls.g = golden("tiny-a.capital")
        cls.long = cls.g["prompt"] + cls.g["greedy"]      # 30 tokens: several batches when budgets are small

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def ctx(self, model=None, **kw):
        kw.setdefault("temperature", 0)
        kw.setdefault("n_ctx", 128)
        kw.setdefault("threads", 2)
        return danu.Context(model or self.model, **kw)

    def reference(self, tokens, model=None, **kw):
        """(tokens, logits bytes) of the blocking eval."""
        with self.ctx(model, **kw) as c:
            c.eval(tokens)
            return c.tokens, c.logits.tobytes()

    def drive(self, c, budget_us):
        """work(budget_us) until finished; the number of calls that returned False."""
        slices = 0
        last = c.pending
        while not c.work(budget_us):
            slices += 1
            self.assertLessEqual(c.pending, last)     # never goes back
            last = c.pending
            self.assertLess(slices, 100000)
        self.assertEqual(c.pending, 0)
        return slices

    def test_eval_begin_bit_identical(self):
        want_tokens, want_logits = self.reference(self.long)
        layers = self.model.info("layers")
        for budget in (500, 0):
            with self.subTest(budget_us=budget), self.ctx() as c:
                c.eval_begin(self.long)
                self.assertEqual(c.pending, len(self.long))
                self.assertIsNone(c.logits)              # queued, not run
                slices = self.drive(c, budget)
                if budget == 0:                          # one unit per call: at least a call per layer
                    self.assertGreaterEqual(slices, layers)
                self.assertEqual(c.tokens, want_tokens)
                self.assertEqual(c.logits.tobytes(), want_logits)
                # and a second batch on top, sliced again, equals the blocking pair
                c.eval_begin(self.g["greedy"][:5])
                self.drive(c, budget)
                with self.ctx() as r:
                    r.eval(self.long)
                    r.eval(self.g["greedy"][:5])
                    self.assertEqual(c.tokens, r.tokens)
                    self.assertEqual(c.logits.tobytes(), r.logits.tobytes())

    def test_prompt_begin(self):
        second = self.g["prompt"] + self.g["greedy"][:10]
        with self.ctx() as r, self.ctx() as c:
            r.prompt(self.long)
            want_reused = r.prompt(second)
            self.assertEqual(c.prompt_begin(self.long), 0)
            self.drive(c, 0)
            self.assertEqual(c.prompt_begin(second), want_reused)
            self.drive(c, 500)
            self.assertEqual(c.tokens, r.tokens)
            self.assertEqual(c.logits.tobytes(), r.logits.tobytes())

    def test_chat_append_begin(self):
        msgs = [{"role": "system", "content": "Be brief."}, ("user", "Why is the sky blue?")]
        with self.ctx() as r, self.ctx() as c:
            r.chat_append(msgs)
            c.chat_append_begin(msgs)
            self.assertGreater(c.pending, 0)
            self.drive(c, 500)
            self.assertEqual(c.tokens, r.tokens)
            self.assertEqual(c.logits.tobytes(), r.logits.tobytes())
            r.chat_append([("user", "And at night?")], add_reply_prompt=False)
            c.chat_append_begin([("user", "And at night?")], add_reply_prompt=False)
            self.drive(c, 0)
            self.assertEqual(c.tokens, r.tokens)
            self.assertEqual(c.logits.tobytes(), r.logits.tobytes())
            with self.assertRaises(danu.InvalidArgumentError):   # checked at once, nothing queued
                c.chat_append_begin([("wizard", "hi")])
            self.assertEqual(c.pending, 0)

    def test_step_sliced_equals_step(self):
        n = len(self.g["greedy"])
        with self.ctx() as r:
            r.eval(self.g["prompt"])
            want = [r.step() for _ in range(n)]
            want_tail = r.step_finish()
            want_tokens, want_logits = r.tokens, r.logits.tobytes()
        for budget in (0, 500):
            with self.subTest(budget_us=budget), self.ctx() as c:
                c.eval(self.g["prompt"])
                got = []
                in_progress = 0
                while len(got) < n:
                    st = c.step_sliced(budget)
                    if st is None:
                        in_progress += 1
                        continue
                    self.assertIsInstance(st, danu.Step)
                    got.append(st)
                self.assertEqual(got, want)          # tokens, texts and reasons
                self.assertEqual(c.step_finish(), want_tail)
                self.assertEqual(c.tokens, want_tokens)
                self.assertEqual(c.logits.tobytes(), want_logits)
                if budget == 0:                      # each step took slices of one unit
                    self.assertGreaterEqual(in_progress, n)

    def test_step_sliced_finishes_queued_work_first(self):
        with self.ctx() as r, self.ctx() as c:
            r.eval(self.g["prompt"])
            want = r.step()
            c.eval_begin(self.g["prompt"])
            st = None
            while st is None:
                st = c.step_sliced(0)
            self.assertEqual(st, want)
            self.assertEqual(c.tokens, r.tokens)

    def test_work_with_nothing_pending(self):
        with self.ctx() as c:
            self.assertEqual(c.pending, 0)
            self.assertIs(c.work(500), True)
            self.assertIs(c.work(0), True)
            c.eval_begin([])                          # n = 0 queues nothing
            self.assertEqual(c.pending, 0)
            self.assertIs(c.work(0), True)
            self.assertIsNone(c.logits)
            for bad in (-1, 1.5, "5", 2 ** 63):
                with self.assertRaises(danu.InvalidArgumentError):
                    c.work(bad)
                with self.assertRaises(ValueError):
                    c.step_sliced(bad)

    def test_calls_while_pending_raise_state(self):
        want_tokens, want_logits = self.reference(self.long)
        with self.ctx() as c:
            c.eval_begin(self.long)
            self.assertFalse(c.work(0))               # started, not finished
            pending = c.pending
            for call in (lambda: c.eval([5]), lambda: c.prompt([1, 5]), lambda: c.eval_begin([5]),
                         lambda: c.prompt_begin([1, 5]), lambda: c.chat_append([("user", "x")]),
                         lambda: c.chat_append_begin([("user", "x")]), c.step, lambda: c.rewind(0),
                         c.save_state, lambda: list(c.generate(3))):
                with self.assertRaises(danu.StateError) as e:
                    call()
                self.assertEqual(e.exception.status, 11)
                self.assertEqual(c.pending, pending)   # the refused call changed nothing
            self.drive(c, 500)
            self.assertEqual(c.tokens, want_tokens)
            self.assertEqual(c.logits.tobytes(), want_logits)
            c.eval([5])                                # nothing pending: allowed again

    def test_abort_between_slices(self):
        want_tokens, want_logits = self.reference(self.long)
        with self.ctx() as c:
            c.eval_begin(self.long)
            self.assertFalse(c.work(0))
            c.abort()
            with self.assertRaises(danu.AbortedError) as e:
                self.drive(c, 500)
            self.assertEqual(e.exception.status, 7)
            self.assertEqual(c.pending, 0)             # dropped
            kept = c.tokens
            self.assertEqual(kept, self.long[:len(kept)])   # finished batches stay cached
            self.assertTrue(c.work(0))                 # nothing pending now
            c.clear()                                  # usable: the same result as never aborted
            c.eval_begin(self.long)
            self.drive(c, 500)
            self.assertEqual(c.tokens, want_tokens)
            self.assertEqual(c.logits.tobytes(), want_logits)
            # clear drops pending work too
            c.clear()
            c.eval_begin(self.long)
            self.assertFalse(c.work(0))
            c.clear()
            self.assertEqual((c.pending, len(c)), (0, 0))
            self.assertTrue(c.work(0))
            c.eval(self.long)
            self.assertEqual(c.logits.tobytes(), want_logits)

    def test_abort_during_step_sliced(self):
        with self.ctx() as r, self.ctx() as c:
            r.eval(self.g["prompt"])
            want = [r.step() for _ in range(3)]
            c.eval(self.g["prompt"])
            got = [c.step()]
            self.assertIsNone(c.step_sliced(0))        # the next token is in flight
            c.abort()
            st = None
            while st is None:
                st = c.step_sliced(0)
            self.assertEqual(st.reason, "aborted")     # as step() reports it: no exception
            self.assertEqual(c.tokens, self.g["prompt"] + [want[0].token])   # not appended
            self.assertEqual(c.pending, 0)
            for _ in range(2):                         # resumes: the tokens of the uninterrupted run
                st = None
                while st is None:
                    st = c.step_sliced(500)
                got.append(st)
            self.assertEqual([s.token for s in got], [s.token for s in want])

    def test_shared_pool(self):
        want_tokens, want_logits = self.reference(self.long)
        with danu.Pool(2) as pool:
            self.assertEqual(pool.size, 2)
            m = danu.Model(MODEL_PATH, pool=pool)
            c1 = self.ctx(m)                            # the model's pool: the shared one
            c2 = self.ctx(pool=pool)                    # a context on another model, same pool
            for c in (c1, c2):
                c.eval(self.long)
                self.assertEqual(c.tokens, want_tokens)
                self.assertEqual(c.logits.tobytes(), want_logits)
        # the pool's own reference is gone; the model and contexts keep it running
        c1.clear()
        c1.eval_begin(self.long)
        self.drive(c1, 500)
        self.assertEqual(c1.logits.tobytes(), want_logits)
        c2.close()
        m.close()
        with self.assertRaises(danu.StateError):
            pool.size
        with self.assertRaises(danu.InvalidArgumentError):
            self.ctx(pool="two threads")

    def test_host_pool_from_executor(self):
        from concurrent.futures import ThreadPoolExecutor
        want_tokens, want_logits = self.reference(self.long)
        with ThreadPoolExecutor(2) as ex:
            pool = danu.Pool.from_executor(ex, 2)
            self.assertEqual(pool.size, 2)
            m = danu.Model(MODEL_PATH, pool=pool)        # repacks on the host pool too
            with self.ctx(m) as c:
                calls = pool.calls
                c.eval(self.long)
                self.assertGreater(pool.calls, calls)  # the evaluation ran on the executor pool
                self.assertEqual(c.tokens, want_tokens)
                self.assertEqual(c.logits.tobytes(), want_logits)
                c.eval_begin(self.g["greedy"][:5])     # sliced work on it too
                self.drive(c, 0)
                with self.ctx() as r:
                    r.eval(self.long + self.g["greedy"][:5])
                    self.assertEqual(c.logits.tobytes(), r.logits.tobytes())
                # two contexts evaluating at once enter the parallel-for from two threads
                with self.ctx(m) as d:
                    c.clear()
                    got = {}

                    def run(ctx, key):
                        ctx.eval(self.long)
                        got[key] = ctx.logits.tobytes()
                    threads = [threading.Thread(target=run, args=(x, k)) for k, x in (("c", c), ("d", d))]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    self.assertEqual(got, {"c": want_logits, "d": want_logits})
            self.assertIsNone(pool.error)
            m.close()
            pool.close()

    def test_host_pool_items_run_once_on_host_threads(self):
        # a host job system in the plainest form: submit every item, wait for all
        from concurrent.futures import ThreadPoolExecutor, wait
        want_tokens, want_logits = self.reference(self.long, threads=3)
        ran = {}
        lock = threading.Lock()
        main = threading.get_ident()
        calls = []

        with ThreadPoolExecutor(3) as ex:
            def parallel_for(job, n_items):
                calls.append(n_items)

                def item(i):
                    with lock:
                        ran[threading.get_ident()] = ran.get(threading.get_ident(), 0) + 1
                    job(i)
                wait([ex.submit(item, i) for i in range(n_items)])

            pool = danu.Pool.host(parallel_for, 3)
            with self.ctx(pool=pool, threads=3) as c:
                c.eval(self.long)
                self.assertEqual(c.logits.tobytes(), want_logits)
        self.assertTrue(calls)
        self.assertTrue(all(1 <= n <= 3 for n in calls), calls)
        self.assertEqual(sum(ran.values()), sum(calls))     # every item through the executor
        self.assertNotIn(main, ran)
        self.assertEqual((pool.calls, pool.items), (len(calls), sum(calls)))
        self.assertIsNone(pool.error)

    def test_host_pool_sloppy_parallel_for(self):
        # a parallel-for that raises, skips items or runs them twice: the
        # binding still runs each item once (the results stay exact) and
        # keeps the first exception
        want_tokens, want_logits = self.reference(self.long)
        seen = []

        def sloppy(job, n_items):
            seen.append(n_items)
            job(0)
            job(0)                          # twice: the second is a no-op
            if len(seen) % 2 == 1:
                raise RuntimeError("host job system failed")
            # the other items are left to the binding

        pool = danu.Pool.host(sloppy, 2)
        with self.ctx(pool=pool) as c:
            c.eval(self.long)
            self.assertEqual(c.logits.tobytes(), want_logits)
        self.assertTrue(seen)
        self.assertIsInstance(pool.error, RuntimeError)
        with self.assertRaises(danu.InvalidArgumentError):
            danu.Pool.host(None, 2)


class TestBatch(unittest.TestCase):
    """libdanu 0.2: many contexts in one pass. The reference of every check is
    the same context stepped or generating alone (danu_context_step)."""

    N = 10      # steps per context

    @classmethod
    def setUpClass(cls):
        cls.model = danu.Model(MODEL_PATH)
        cls.g = golden("tiny-a.capital")
        tok = cls.model.tokenizer
        cls.long = cls.g["prompt"] + cls.g["greedy"]       # 30 tokens: several passes when queued
        cls.prompts = [cls.g["prompt"], cls.long, tok.encode("Once upon a time"),
                       tok.encode("A long prompt that is queued with prompt_begin and evaluated in parts"),
                       tok.encode("Once upon a time")]
        # (sampling, how the prompt goes in): greedy and seeded sampling, some
        # prompts evaluated before the batch, some queued (evaluated by the batch's passes)
        cls.setups = [(dict(temperature=0), "eval"),
                      (dict(temperature=0.9, seed=11), "eval_begin"),
                      (dict(temperature=0.9, seed=12), "eval"),
                      (dict(temperature=0), "prompt_begin"),
                      (dict(temperature=0.9, seed=13), "eval_begin")]

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def ctx(self, model=None, **kw):
        kw.setdefault("temperature", 0)
        kw.setdefault("n_ctx", 128)
        kw.setdefault("threads", 2)
        return danu.Context(model or self.model, **kw)

    def make(self, k, threads, blocking=False):
        """Context k of the setups with its prompt evaluated (blocking) or as the setup says."""
        sampling, how = self.setups[k]
        c = self.ctx(threads=threads, **sampling)
        p = self.prompts[k]
        if blocking or how == "eval":
            c.eval(p)
        elif how == "eval_begin":
            c.eval_begin(p)
        else:
            self.assertEqual(c.prompt_begin(p), 0)
        return c

    def alone(self, k, threads, n=None):
        """(steps, held-back tail, tokens, logits) of context k stepped alone."""
        with self.make(k, threads, blocking=True) as c:
            steps = [c.step() for _ in range(n or self.N)]
            return steps, c.step_finish(), c.tokens, c.logits.tobytes()

    def test_step_matches_alone(self):
        refs = {t: [self.alone(k, t) for k in range(5)] for t in (1, 2)}
        # the references really sample: the seeded contexts differ from greedy and from each other
        self.assertNotEqual([s.token for s in refs[2][2][0]], [s.token for s in refs[2][4][0]])
        with self.ctx(temperature=0) as greedy:
            greedy.eval(self.prompts[1])
            self.assertNotEqual(refs[2][1][0], [greedy.step() for _ in range(self.N)])
        for threads in (1, 2):
            for size in (1, 3, 5):
                with self.subTest(threads=threads, size=size):
                    batch = danu.Batch(self.model, size, n_batch=8, n_threads=threads)
                    self.assertGreater(batch.memory_size, 0)
                    ctxs = [self.make(k, threads) for k in range(size)]
                    got = [[] for _ in range(size)]
                    in_progress = [0] * size
                    passes = 0
                    while any(len(s) < self.N for s in got):
                        live = [k for k in range(size) if len(got[k]) < self.N]
                        res = batch.step([ctxs[k] for k in live])
                        passes += 1
                        self.assertEqual(len(res), len(live))
                        for k, r in zip(live, res):
                            if r is None:
                                in_progress[k] += 1
                            else:
                                self.assertIsInstance(r, danu.Step)
                                got[k].append(r)
                        self.assertLess(passes, 200)
                    for k in range(size):
                        steps, tail, tokens, logits = refs[threads][k]
                        self.assertEqual(got[k], steps, "context %d" % k)     # tokens, texts, reasons
                        self.assertEqual(ctxs[k].step_finish(), tail)
                        self.assertEqual(ctxs[k].tokens, tokens)
                        self.assertEqual(ctxs[k].logits.tobytes(), logits)
                        # queued prompts took passes of their own (n_batch 8: the long ones several)
                        self.assertEqual(in_progress[k] > 0, self.setups[k][1] != "eval")
                        ctxs[k].close()
                    if size >= 2:
                        self.assertGreater(in_progress[1], 1)
                    batch.close()
                    with self.assertRaises(danu.StateError):
                        batch.memory_size

    def test_generate_matches_alone(self):
        n = 12
        for threads in (1, 2):
            want_text, want_tokens, want_reasons = [], [], []
            for k in range(5):
                with self.make(k, threads, blocking=True) as c:
                    if k == 2:
                        c.add_stop(self.stop_of(k, n))
                    want_text.append("".join(c.generate(n)))
                    want_tokens.append(c.tokens)
                    want_reasons.append(c.stop_reason)
            self.assertIn("stop", want_reasons)          # one context ends on its stop string
            self.assertIn("length", want_reasons)
            with danu.Batch(self.model, 5, n_batch=8, n_threads=threads) as batch:
                for stream in (True, False):
                    with self.subTest(threads=threads, stream=stream):
                        ctxs = [self.make(k, threads) for k in range(5)]
                        ctxs[2].add_stop(self.stop_of(2, n))
                        texts = [""] * 5
                        if stream:
                            order = []
                            for c, piece in batch.generate(ctxs, n):
                                self.assertIsInstance(piece, str)
                                k = ctxs.index(c)
                                texts[k] += piece
                                order.append(k)
                            # pieces arrive pass by pass: the contexts that generate from the
                            # first pass come before those whose prompts were queued
                            self.assertLess(order.index(0), order.index(1))
                            self.assertIn(2, order[:order.index(1)])
                        else:
                            texts = batch.generate(ctxs, n, stream=False)
                        self.assertEqual(texts, want_text)
                        self.assertEqual([c.tokens for c in ctxs], want_tokens)
                        self.assertEqual(batch.stop_reasons, want_reasons)
                        for c in ctxs:
                            c.close()

    def test_on_a_pool(self):
        refs = [self.alone(k, 2, n=4) for k in (0, 2)]
        with danu.Pool(2) as pool:
            batch = danu.Batch(self.model, 2, pool=pool, n_threads=2)
        # the pool's own reference is gone; the batch keeps it running
        ctxs = [self.make(k, 2, blocking=True) for k in (0, 2)]
        got = [batch.step(ctxs) for _ in range(4)]
        self.assertEqual([[r[j] for r in got] for j in (0, 1)], [refs[0][0], refs[1][0]])
        batch.close()
        with self.assertRaises(danu.InvalidArgumentError):
            danu.Batch(self.model, 2, pool="two threads")

    def stop_of(self, k, n):
        """A stop string from the middle of context k's text alone."""
        with self.make(k, 2, blocking=True) as c:
            text = "".join(c.generate(n))
        self.assertGreater(len(text), 12)
        return text[6:10]

    def test_generate_left_early_and_zero(self):
        with danu.Batch(self.model, 2) as batch, self.make(0, 2) as a, self.make(2, 2) as b:
            self.assertEqual(list(batch.generate([a, b], 0)), [])
            self.assertEqual(batch.stop_reasons, ["length", "length"])
            it = batch.generate([a, b], 5)
            next(it)
            it.close()                                  # left early: no reasons for them
            self.assertEqual(batch.stop_reasons, [None, None])
            a.step()                                    # both usable on their own again
            b.step()

    def test_abort_one_context(self):
        refs = [self.alone(k, 2, n=4) for k in (0, 2, 4)]
        with danu.Batch(self.model, 3) as batch:
            ctxs = [self.make(k, 2, blocking=True) for k in (0, 2, 4)]
            first = batch.step(ctxs)
            before = ctxs[1].tokens
            ctxs[1].abort()
            second = batch.step(ctxs)
            self.assertEqual(second[1].reason, "aborted")                      # as Context.step reports it
            self.assertEqual(ctxs[1].tokens, before)                           # its token is not appended
            for k in (0, 2):                                                   # the others go on
                self.assertEqual([first[k], second[k]], refs[k][0][:2])
            rest = [batch.step(ctxs) for _ in range(2)]
            self.assertEqual([r[0] for r in rest], refs[0][0][2:4])
            self.assertEqual([r[2] for r in rest], refs[2][0][2:4])
            # the aborted one goes on as the same context aborted alone does
            with self.make(2, 2, blocking=True) as r:
                want = [r.step()]
                r.abort()
                self.assertEqual(r.step().reason, "aborted")
                want += [r.step(), r.step()]
                self.assertEqual(first[1:2] + [x[1] for x in rest], want)
                self.assertEqual(ctxs[1].tokens, r.tokens)
            for c in ctxs:
                c.close()
            # from inside a generation: context 0's first piece aborts context 1
            want = []
            for k in (0, 2, 4):
                with self.make(k, 2, blocking=True) as c:
                    want.append("".join(c.generate(6)))
            ctxs = [self.make(k, 2, blocking=True) for k in (0, 2, 4)]
            texts = ["", "", ""]
            for c, piece in batch.generate(ctxs, 6):
                texts[ctxs.index(c)] += piece
                if c is ctxs[0] and batch.stop_reasons[1] is None:
                    ctxs[1].abort()
            self.assertEqual(batch.stop_reasons, ["length", "aborted", "length"])
            self.assertEqual([texts[0], texts[2]], [want[0], want[2]])
            self.assertTrue(want[1].startswith(texts[1]))
            for c in ctxs:
                c.close()

    def test_bad_input(self):
        with danu.Batch(self.model, 3) as batch, self.make(0, 2) as a, self.make(1, 2) as b:
            self.assertGreater(b.pending, 0)
            state = [(c.tokens, c.pending, c.logits and c.logits.tobytes()) for c in (a, b)]
            for bad in ([a, b, a], [b, b]):
                with self.assertRaises(danu.InvalidArgumentError):      # the C call refuses it
                    batch.step(bad)
                with self.assertRaises(danu.InvalidArgumentError):
                    list(batch.generate(bad, 3))
                with self.assertRaises(danu.InvalidArgumentError):
                    batch.generate(bad, 3, stream=False)
            with self.assertRaises(danu.InvalidArgumentError):
                batch.step([a, b, self.make(2, 2), self.make(4, 2)])       # above max_contexts
            with self.assertRaises(danu.InvalidArgumentError):
                batch.step([])
            with self.assertRaises(danu.InvalidArgumentError):
                batch.step([a, "b"])
            with danu.Model(MODEL_PATH) as other, self.ctx(other) as o:
                o.eval([1, 5])
                with self.assertRaises(danu.InvalidArgumentError):
                    batch.step([a, o])
                with self.assertRaises(danu.InvalidArgumentError):
                    batch.generate([o], 3, stream=False)
            self.assertEqual([(c.tokens, c.pending, c.logits and c.logits.tobytes()) for c in (a, b)], state)
            # one context's own error: raised after the pass, the others' results kept
            with self.ctx() as empty:
                with self.assertRaises(danu.StateError) as e:
                    batch.step([a, empty])                      # nothing evaluated: no logits
                self.assertIsInstance(e.exception.results[0], danu.Step)
                self.assertIsInstance(e.exception.results[1], danu.StateError)
                with self.alone_ctx(0) as r:
                    self.assertEqual(e.exception.results[0], r.step())
                with self.assertRaises(danu.StateError):
                    list(batch.generate([a, empty], 3))
                with self.assertRaises(danu.InvalidArgumentError):
                    list(batch.generate([a], -1))
        with self.assertRaises(danu.InvalidArgumentError):
            danu.Batch(self.model, 0)
        with self.assertRaises(danu.InvalidArgumentError):
            danu.Batch(self.model, 5000)
        m = danu.Model(MODEL_PATH)
        batch = danu.Batch(m, 2)
        m.close()                                        # closes its batches too
        with self.assertRaises(danu.StateError):
            batch.step([])

    def alone_ctx(self, k):
        return self.make(k, 2, blocking=True)

    def test_fork_and_copy(self):
        for sampling in (dict(temperature=0), dict(temperature=0.9, seed=21)):
            with self.subTest(**sampling), self.ctx(**sampling) as c:
                c.eval(self.long)
                c.step()                        # a generation under way, sampler advanced
                f = c.fork()
                self.assertEqual(f.tokens, c.tokens)
                self.assertEqual(f.logits.tobytes(), c.logits.tobytes())
                with self.ctx(temperature=0.5, seed=99) as d:
                    d.eval([1, 7, 8, 9])
                    d.copy_from(c)
                    self.assertEqual(d.tokens, c.tokens)
                    self.assertEqual(d.logits.tobytes(), c.logits.tobytes())
                    want = "".join(c.generate(10))
                    self.assertEqual("".join(f.generate(10)), want)     # the same continuation
                    self.assertEqual("".join(d.generate(10)), want)
                    self.assertEqual(f.tokens, c.tokens)
                    self.assertEqual(d.tokens, c.tokens)
                    self.assertEqual(f.logits.tobytes(), c.logits.tobytes())
                f.close()

    def test_copy_errors(self):
        with self.ctx() as c, self.ctx() as d:
            c.eval(self.long)
            d.eval([1, 5, 6])
            keep = d.tokens, d.logits.tobytes()
            with self.assertRaises(danu.InvalidArgumentError):
                c.copy_from(c)                              # onto itself
            with danu.Model(MODEL_PATH) as other, self.ctx(other) as o:
                with self.assertRaises(danu.InvalidArgumentError):
                    d.copy_from(o)                          # another model
                with self.assertRaises(danu.InvalidArgumentError):
                    o.copy_from(d)
            with self.ctx(n_ctx=16) as small:
                with self.assertRaises(danu.InvalidArgumentError):
                    small.copy_from(c)                      # 30 tokens do not fit
            with self.ctx(kv_type="f32") as f32:
                with self.assertRaises(danu.InvalidArgumentError):
                    f32.copy_from(c)
            with self.assertRaises(danu.InvalidArgumentError):
                d.copy_from("c")
            with self.ctx() as p:
                p.eval_begin(self.long)
                with self.assertRaises(danu.StateError):
                    d.copy_from(p)                          # work pending on src
                with self.assertRaises(danu.StateError):
                    p.copy_from(c)                          # on dst
                with self.assertRaises(danu.StateError):
                    p.fork()
            self.assertEqual((d.tokens, d.logits.tobytes()), keep)   # unchanged by every refusal


class TestConstraints(unittest.TestCase):
    """libdanu 0.2: constrained output (grammars, JSON Schema, choices). The
    tiny model has random weights, so every check is on the language the
    text must belong to, whatever was sampled."""

    CHOICES = ["attack", "flee", "talk to the guard", "wait"]
    SCHEMA = {"type": "object",
              "properties": {"name": {"type": "string", "maxLength": 8},
                             "hp": {"type": "integer", "minimum": 0, "maximum": 99},
                             "class": {"enum": ["mage", "rogue"]}},
              "required": ["name", "hp", "class"]}

    @classmethod
    def setUpClass(cls):
        cls.model = danu.Model(MODEL_PATH)
        cls.prompt = cls.model.tokenizer.encode("The hero decides to")

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def ctx(self, **kw):
        kw.setdefault("temperature", 0.9)
        kw.setdefault("seed", 5)
        kw.setdefault("n_ctx", 512)
        kw.setdefault("threads", 2)
        c = danu.Context(self.model, **kw)
        c.eval(self.prompt)
        return c

    def test_choices(self):
        for seed in (1, 2, 3):
            with self.ctx(seed=seed) as c:
                text = "".join(c.generate(64, choices=self.CHOICES))
                self.assertIn(text, self.CHOICES)
                self.assertIn(c.stop_reason, ("grammar", "eos"))
                self.assertEqual(c.constraint_state, "none")   # the call's constraint is gone again

    def test_grammar(self):
        gbnf = ('root ::= answer " " num\n'
                'answer ::= "yes" | "no"   # a comment\n'
                'num ::= [1-9] [0-9]{0,2}\n')
        with self.ctx() as c:
            text = "".join(c.generate(64, grammar=gbnf))
            self.assertRegex(text, r"\A(yes|no) [1-9][0-9]{0,2}\Z")
            self.assertIn(c.stop_reason, ("grammar", "eos"))

    def test_json_schema(self):
        for seed, spaces in ((1, False), (2, True)):
            with self.ctx(seed=seed) as c:
                if spaces:
                    k = danu.Constraint.json_schema(self.model, json.dumps(self.SCHEMA), spaces=True)
                    text = "".join(c.generate(300, json_schema=k))
                else:
                    text = "".join(c.generate(300, json_schema=self.SCHEMA))
                self.assertIn(c.stop_reason, ("grammar", "eos"), text)
                value = json.loads(text)
                self.assertEqual(sorted(value), ["class", "hp", "name"])
                self.assertLessEqual(len(value["name"]), 8)
                self.assertIn(value["hp"], range(100))
                self.assertIn(value["class"], ("mage", "rogue"))
        g = danu.json_schema_to_grammar(self.SCHEMA)
        self.assertIn("root", g)
        k = danu.Constraint.grammar(self.model, g)       # the GBNF compiles as such
        k.close()

    def test_json_by_grammar(self):
        # JSON through a hand-written grammar (independent of the schema converter)
        gbnf = r"""
root  ::= "{" ws "\"name\":" ws name "," ws "\"hp\":" ws hp ws "}"
name  ::= "\"" [a-zA-Z ]{1,8} "\""
hp    ::= [0-9] | [1-9] [0-9]
ws    ::= " "?
"""
        for seed in (1, 2, 3):
            with self.ctx(seed=seed) as c:
                text = "".join(c.generate(100, grammar=gbnf))
                self.assertIn(c.stop_reason, ("grammar", "eos"), text)
                value = json.loads(text)
                self.assertEqual(sorted(value), ["hp", "name"])
                self.assertIn(value["hp"], range(100))
        # the bench's generic JSON grammar compiles
        with open(os.path.join(ROOT, "bench", "grammar", "json.gbnf")) as f:
            danu.Constraint.grammar(self.model, f.read()).close()

    def test_attached_and_state(self):
        with self.ctx() as c:
            self.assertEqual(c.constraint_state, "none")
            self.assertIsNone(c.constraint)
            k = danu.Constraint.choices(self.model.tokenizer, ["north", "south"])
            c.set_constraint(k)
            self.assertIs(c.constraint, k)
            self.assertEqual(c.constraint_state, "open")
            steps = []
            while not steps or steps[-1].reason is None:
                steps.append(c.step())
                self.assertLess(len(steps), 40)
            self.assertIn("".join(s.text for s in steps) + c.step_finish(), ("north", "south"))
            self.assertIn(steps[-1].reason, ("grammar", "eos"))
            self.assertIn(c.constraint_state, ("complete", "finished"))
            # a per-call constraint, then the attached one is back
            text = "".join(c.generate(32, choices=["up", "down"]))
            self.assertIn(text, ("up", "down"))
            self.assertIs(c.constraint, k)
            text = "".join(c.generate(32))
            self.assertIn(text, ("north", "south"))
            c.set_constraint(None)
            self.assertEqual(c.constraint_state, "none")
            k.close()

    def test_freed_before_the_context(self):
        with self.ctx() as c:
            k = danu.Constraint.choices(self.model, self.CHOICES)
            c.set_constraint(k)
            k.close()
            k.close()                                    # at most once
            del k
            import gc
            gc.collect()
            text = "".join(c.generate(64))
            self.assertIn(text, self.CHOICES)
            with self.assertRaises(danu.StateError):
                c.constraint._handle()                   # the Python object is closed, the C context keeps its own

    def test_batch(self):
        contexts = [self.ctx(seed=s) for s in (1, 2, 3)]
        try:
            b = danu.Batch(self.model, 3)
            with b:
                texts = b.generate(contexts, 64, stream=False, choices=self.CHOICES)
                for t in texts:
                    self.assertIn(t, self.CHOICES)
                for r in b.stop_reasons:
                    self.assertIn(r, ("grammar", "eos"))
                for c in contexts:
                    self.assertEqual(c.constraint_state, "none")
                for c in contexts:
                    c.eval(self.prompt)
                pieces = [[] for _ in contexts]
                for c, piece in b.generate(contexts, 300, json_schema=self.SCHEMA):
                    pieces[contexts.index(c)].append(piece)
                for p in pieces:
                    self.assertEqual(sorted(json.loads("".join(p))), ["class", "hp", "name"])
                for c in contexts:
                    self.assertEqual(c.constraint_state, "none")
        finally:
            for c in contexts:
                c.close()

    def test_errors(self):
        with self.assertRaises(danu.InvalidArgumentError) as e:
            danu.Constraint.grammar(self.model, 'root ::= "yes" | \n  "no\n')
        self.assertRegex(str(e.exception).lower(), r"line\s*\d+.*col(umn)?\s*\d+|\d+:\d+")
        with self.assertRaises(danu.InvalidArgumentError):
            danu.Constraint.grammar(self.model, 'root ::= missing\n')
        with self.assertRaises(danu.InvalidArgumentError):
            danu.Constraint.grammar(self.model, 'start ::= "a"\n')             # no root rule
        danu.Constraint.grammar(self.model, 'start ::= "a"\n', root="start").close()
        with self.assertRaises(danu.UnsupportedError) as e:
            danu.Constraint.json_schema(self.model, {"type": "string", "pattern": "^a+$"})
        self.assertIn("pattern", str(e.exception))
        with self.assertRaises(danu.UnsupportedError):
            danu.json_schema_to_grammar({"type": "string", "pattern": "^a+$"})
        with self.assertRaises(danu.InvalidArgumentError):
            danu.Constraint.json_schema(self.model, "{not json")
        with self.assertRaises(danu.InvalidArgumentError):
            danu.Constraint.choices(self.model, [])
        with self.assertRaises(danu.InvalidArgumentError):
            danu.Constraint.choices(self.model, ["a", ""])
        with self.assertRaises(danu.InvalidArgumentError):
            danu.Constraint.choices(self.model, "abc")
        with self.assertRaises(TypeError):
            danu.Constraint()
        with self.ctx() as c:
            with self.assertRaises(TypeError):
                c.generate(8, grammar='root ::= "a"', choices=["a"])
            with self.assertRaises(TypeError):
                c.chat([("user", "hi")], 8, json_schema={}, choices=["a"])
            self.assertEqual(len(c), len(self.prompt))     # nothing appended
            with self.assertRaises(danu.InvalidArgumentError):
                c.set_constraint("root ::= x")
            with self.assertRaises(TypeError):
                b = danu.Batch(self.model, 1)
                try:
                    b.generate([c], 8, grammar='root ::= "a"', json_schema={})
                finally:
                    b.close()


class TestTokenizer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tok = danu.Tokenizer(os.path.join(DATA, "llama2-tokenizer", "tokenizer.model"))

    def cases(self, name, limit):
        with open(os.path.join(DATA, "llama2-tokenizer", name), encoding="utf-8") as f:
            rows = [l.rstrip("\n").split("\t") for l in f if not l.startswith("#") and l.strip()]
        return rows[:limit]

    def test_encode_cases(self):
        rows = self.cases("cases.tsv", 60)
        self.assertEqual(len(rows), 60)
        for hex_text, ids in rows:
            text = bytes.fromhex(hex_text).decode("utf-8")
            want = [int(x) for x in ids.split()]
            self.assertEqual(self.tok.encode(text, add_bos=False), want, text)
            self.assertEqual(self.tok.encode(text)[1:], want)

    def test_decode_cases(self):
        for ids, hex_text in self.cases("cases-decode.tsv", 60):
            want = bytes.fromhex(hex_text).decode("utf-8")
            self.assertEqual(self.tok.decode([int(x) for x in ids.split()]), want)

    def test_decoder_streams_like_decode(self):
        ids = self.tok.encode("Grüße aus Prag 🙂, naïve café", add_bos=False)
        dec = self.tok.decoder()
        streamed = "".join(dec.push(i) for i in ids) + dec.flush()
        self.assertEqual(streamed, self.tok.decode(ids))
        self.assertEqual(self.tok.vocab_size, 32000)
        self.assertEqual(self.tok.piece(450), "\u2581The")

    def test_special(self):
        self.assertEqual(self.tok.encode("</s>", add_bos=False, special=True), [2])
        self.assertNotEqual(self.tok.encode("</s>", add_bos=False), [2])
        self.assertEqual(self.tok.encode("hi", add_eos=True)[-1], 2)


class TestBuildBackend(unittest.TestCase):
    """The in-tree PEP 517 backend (danu_build.py): pip needs nothing else."""

    def setUp(self):
        sys.path.insert(0, os.path.join(HERE, ".."))
        import danu_build
        self.b = danu_build
        self.out = tempfile.mkdtemp(prefix="danu-wheel-")

    def tearDown(self):
        shutil.rmtree(self.out, ignore_errors=True)

    def test_pyproject(self):
        bs = self.b._read_pyproject(os.path.join(HERE, "..", "pyproject.toml"))["build-system"]
        self.assertEqual((bs["requires"], bs["build-backend"], bs["backend-path"]), ([], "danu_build", ["."]))
        self.assertEqual(self.b.get_requires_for_build_wheel(), [])
        self.assertEqual(self.b.get_requires_for_build_sdist(), [])
        self.assertEqual(self.b.get_requires_for_build_editable(), [])
        self.assertEqual(self.b._project()["version"], danu.__version__)

    def test_wheel(self):
        import base64
        import hashlib
        import zipfile
        name = self.b.build_wheel(self.out)
        self.assertEqual(name, "danu-%s-py3-none-any.whl" % danu.__version__)
        with zipfile.ZipFile(os.path.join(self.out, name)) as z:
            names = z.namelist()
            info = "danu-%s.dist-info/" % danu.__version__
            self.assertEqual(sorted(names), sorted(["danu/__init__.py", "danu/_lib.py", info + "METADATA",
                                                    info + "WHEEL", info + "RECORD"]))
            rows = [r.split(",") for r in z.read(info + "RECORD").decode().splitlines()]
            self.assertEqual(sorted(r[0] for r in rows), sorted(names))
            for path, digest, size in rows:
                if path == info + "RECORD":
                    self.assertEqual((digest, size), ("", ""))
                    continue
                data = z.read(path)
                want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                self.assertEqual((digest, int(size)), ("sha256=" + want, len(data)), path)
            meta = z.read(info + "METADATA").decode()
            self.assertIn("Name: danu\n", meta)
            self.assertIn("Version: %s\n" % danu.__version__, meta)
            self.assertIn("Root-Is-Purelib: true", z.read(info + "WHEEL").decode())
            with open(os.path.join(HERE, "..", "danu", "_lib.py"), "rb") as f:
                self.assertEqual(z.read("danu/_lib.py"), f.read())

    def test_editable_and_sdist(self):
        import tarfile
        import zipfile
        name = self.b.build_editable(self.out)
        with zipfile.ZipFile(os.path.join(self.out, name)) as z:
            pth = z.read("__editable__.danu.pth").decode().strip()
            self.assertTrue(os.path.samefile(pth, os.path.join(HERE, "..")))
        name = self.b.build_sdist(self.out)
        with tarfile.open(os.path.join(self.out, name)) as t:
            base = "danu-%s/" % danu.__version__
            got = set(t.getnames())
        for f in ("pyproject.toml", "README.md", "danu_build.py", "PKG-INFO", "danu/__init__.py", "danu/_lib.py"):
            self.assertIn(base + f, got)


class TestLibraryLookup(unittest.TestCase):
    def test_env_wins(self):
        old = os.environ.get("DANU_LIBRARY")
        os.environ["DANU_LIBRARY"] = "/nowhere/libdanu.so"
        try:
            self.assertEqual(list(_lib._candidates()), ["/nowhere/libdanu.so"])
        finally:
            if old is None:
                del os.environ["DANU_LIBRARY"]
            else:
                os.environ["DANU_LIBRARY"] = old

    def test_loaded(self):
        self.assertTrue(danu.library_version().startswith("0."))
        self.assertEqual(_lib.get().danu_version_number() // 10000, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
