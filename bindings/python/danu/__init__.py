"""danu - Python binding of libdanu (pure ctypes, no compiled extension).

    import danu
    model = danu.Model("h2o-danube-1.8b-chat.Q4_K_M.gguf")
    ctx = danu.Context(model, n_ctx=2048, temperature=0.7)
    print(ctx.chat([{"role": "user", "content": "Why is the sky blue?"}], max_tokens=200))

The library is found through DANU_LIBRARY (a path), then the installed
libdanu.so.0, then a meson build tree above this package (build*/lib).
Errors. Every failure raises a DanuError subclass carrying .status (the
danu_status number) and .detail (danu_last_error()); each also derives from the
built-in exception a Python caller would expect:

    DanuError(Exception)
      InvalidArgumentError(ValueError)   bad value: max_tokens < 0, a seed or other
                                         option outside danu.param_bounds(name)
      OutOfMemoryError(MemoryError)
      DanuIOError(OSError)               open/read/write failed
        DanuFileNotFoundError(FileNotFoundError)   the file is missing (errno ENOENT,
                                         .filename): `except FileNotFoundError` works
      FormatError                        corrupt or foreign file
      UnsupportedError                   unknown option, valid but unsupported input
        UnknownKeyError(KeyError)        Model.info() with an unknown name (lists the valid ones)
      CancelledError                     a progress callback returned True
      AbortedError                       eval/prompt/chat_append (or work() on their
                                         *_begin forms) stopped by abort()
      ContextFullError, StateError, BufferTooSmallError, InternalError
      BadTokenError(ValueError), BadUtf8Error(ValueError)

An abort or a full context during generation (generate, chat, step) is no
exception: generation ends with stop_reason "aborted" or "full", as every
binding reports it (the C call returns DANU_ERR_ABORTED with reason
DANU_STOP_ABORTED). After an abort the context is as before the aborted token,
so generate() resumes where it stopped.

Threading follows the C library: a Model may be shared by contexts on any
threads; a Context is used by one thread at a time, except Context.abort(),
which any thread may call while another one evaluates or generates.

Thread pools (libdanu 0.2). Every model runs on a pool of its own unless it
is given one: Pool(n_threads) is a pool several models and contexts can
share (Model(path, pool=p), Context(model, pool=p)); Pool.host(parallel_for)
runs libdanu's parallel work on the application's own job system, e.g.
Pool.from_executor(concurrent.futures.ThreadPoolExecutor(4), 4).

Work in slices (libdanu 0.2), for loops that cannot block for a whole prompt:
ctx.eval_begin(ids) / prompt_begin(ids) / chat_append_begin(messages) queue the
evaluation; ctx.work(budget_us) advances it for about that many microseconds
and returns True once it is finished (False: call again; DANU_IN_PROGRESS
is no error); ctx.step_sliced(budget_us) is step() in slices (None until the
token is evaluated). Results are bit-identical to the blocking calls. While
work is pending, calls that evaluate or change the cache raise StateError;
ctx.abort() makes the next work() raise AbortedError (nothing stays pending).

Many contexts at once (libdanu 0.2): Batch(model, max_contexts) advances
several contexts of one model in one forward pass (the weights are read once
for all), each producing exactly the tokens it would produce alone:
batch.step(contexts) is one Context.step() of each (None for a context whose
queued *_begin work advanced instead), batch.generate(contexts, max_tokens)
yields (context, piece) events in the order they arrive, then
batch.stop_reasons holds each context's reason. ctx.fork() is a new context
holding a copy of ctx (cache, logits, sampler), ctx.copy_from(src) makes an
existing one a copy: a long prompt evaluated once serves many contexts.

Constrained output (libdanu 0.2): the generated text follows a GBNF grammar,
a JSON Schema or a list of strings. Per call:

    ctx.generate(64, choices=["attack", "flee", "talk"])
    ctx.generate(200, json_schema={"type": "object", "properties": {...}})
    ctx.generate(64, grammar='root ::= "yes" | "no"')
    batch.generate([a, b], 64, json_schema=schema)

or compiled once and attached (a context keeps it for every generation):

    c = danu.Constraint.json_schema(model, schema)     # also .grammar, .choices
    ctx.set_constraint(c)      # None removes it
    ctx.constraint_state       # "none", "open", "complete", "finished"

A generation whose text is complete and admits no continuation ends with
stop_reason "grammar". danu.json_schema_to_grammar(schema) is the GBNF a
schema compiles to. Grammar syntax errors raise InvalidArgumentError (the
message gives line and column), schema keywords libdanu cannot honour
UnsupportedError.
"""
import array
import ctypes
import errno
import json
import os
import threading
import weakref
from ctypes import byref, c_char_p, c_double, c_float, c_int32, c_int64, c_size_t, c_void_p

from . import _lib

__all__ = [
    "Model", "Context", "Pool", "Batch", "Checkpoint", "Tokenizer", "Decoder", "Step", "DanuError", "InvalidArgumentError", "OutOfMemoryError",
    "DanuIOError", "DanuFileNotFoundError", "UnknownKeyError", "FormatError", "UnsupportedError", "CancelledError", "AbortedError", "ContextFullError",
    "BadTokenError", "BadUtf8Error", "StateError", "BufferTooSmallError", "InternalError", "synth_write",
    "version", "library_version", "param_bounds", "Constraint", "json_schema_to_grammar",
]

__version__ = "0.1.0"

# ---- constants of danu.h ------------------------------------------------------------
OK = 0
IN_PROGRESS = 14          # not an error: sliced work remains (Context.work, step_sliced, Batch.step)
FORMAT_HF, FORMAT_GGUF = 1, 2
TYPE_F32, TYPE_F16, TYPE_Q4_0, TYPE_Q4_1, TYPE_Q5_0, TYPE_Q5_1, TYPE_Q8_0 = 0, 1, 2, 3, 6, 7, 8
TYPE_Q4_K, TYPE_Q5_K, TYPE_Q6_K, TYPE_BF16 = 12, 13, 14, 30
KV_F16, KV_F32, KV_Q8_0 = 0, 1, 2
FULL_ERROR, FULL_SHIFT = 0, 1
ISA_AUTO, ISA_SCALAR, ISA_AVX2, ISA_AVX512, ISA_NEON, ISA_AVX2VNNI = 0, 1, 2, 3, 4, 5
REPACK_AUTO, REPACK_OFF, REPACK_ON = -1, 0, 1
LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG = 0, 1, 2, 3
TOKENIZE_ADD_BOS, TOKENIZE_ADD_EOS, TOKENIZE_PARSE_SPECIAL = 1, 2, 4
STOP_LENGTH, STOP_EOS, STOP_STRING, STOP_CALLBACK, STOP_ABORTED, STOP_FULL, STOP_GRAMMAR = 0, 1, 2, 3, 4, 5, 6
STOP_NAMES = {0: "length", 1: "eos", 2: "stop", 3: "callback", 4: "aborted", 5: "full", 6: "grammar"}
CONSTRAINT_NONE, CONSTRAINT_OPEN, CONSTRAINT_COMPLETE, CONSTRAINT_FINISHED = 0, 1, 2, 3
CONSTRAINT_STATES = {0: "none", 1: "open", 2: "complete", 3: "finished"}
SCHEMA_SPACES = 1

INFO = {"vocab": 1, "hidden": 2, "layers": 3, "heads": 4, "kv_heads": 5, "head_dim": 6, "ffn": 7,
        "context_length": 8, "sliding_window": 9, "bos": 10, "eos": 11, "unk": 12, "format": 13,
        "tensor_count": 14, "weight_bytes": 15, "tied_embeddings": 16, "isa": 17, "file_type": 18,
        "repacked_matrices": 19, "repacked_bytes": 20}
FLOAT_INFO = {"rope_theta": 100, "rms_eps": 101}

# Friendly values for enum-valued options.
_OPTION_WORDS = {
    "kv_type": {"f16": KV_F16, "f32": KV_F32, "q8_0": KV_Q8_0},
    "on_full": {"error": FULL_ERROR, "shift": FULL_SHIFT},
    "isa": {"auto": ISA_AUTO, "scalar": ISA_SCALAR, "avx2": ISA_AVX2, "avx2vnni": ISA_AVX2VNNI,
            "avx512": ISA_AVX512, "neon": ISA_NEON},
    "repack": {"auto": REPACK_AUTO, "off": REPACK_OFF, "on": REPACK_ON},
}
_OPTION_ALIASES = {"threads": "n_threads", "temp": "temperature", "batch": "n_batch"}
# The float keys of danu.h (DANU_OPT_*); every other key is an int. The library
# refuses a key set through the setter of the other type (UNSUPPORTED), so the
# setter is picked by the key, not by the Python type of the value.
_FLOAT_OPTIONS = frozenset(("temperature", "top_p", "min_p", "repeat_penalty", "frequency_penalty",
                            "presence_penalty"))

_STEP_BUFFER = 8192   # one step's text: a piece plus text held back for stop strings


# ---- errors -------------------------------------------------------------------------
class DanuError(Exception):
    """A libdanu call failed. .status is the danu_status, .detail danu_last_error()."""
    status = -1

    def __init__(self, status, detail, what=None):
        self.status = status
        self.detail = detail
        self.what = what
        text = _strerror(status)
        msg = "%s: %s" % (what, text) if what else text
        self.message = msg + (": " + detail if detail else "")
        super().__init__(self.message)

    def __str__(self):      # not OSError's "[Errno ...]" nor KeyError's repr
        return self.message


class InvalidArgumentError(DanuError, ValueError): status = 1
class OutOfMemoryError(DanuError, MemoryError): status = 2
class DanuIOError(DanuError, OSError): status = 3


class DanuFileNotFoundError(DanuIOError, FileNotFoundError):
    """The file to read does not exist (errno ENOENT, .filename the path)."""


class FormatError(DanuError): status = 4
class UnsupportedError(DanuError): status = 5
class CancelledError(DanuError): status = 6
class AbortedError(DanuError): status = 7
class ContextFullError(DanuError): status = 8
class BadTokenError(DanuError, ValueError): status = 9
class BadUtf8Error(DanuError, ValueError): status = 10
class StateError(DanuError): status = 11
class BufferTooSmallError(DanuError): status = 12
class InternalError(DanuError): status = 13


class UnknownKeyError(UnsupportedError, KeyError):
    """An unknown name for Model.info() (the message lists the valid ones)."""


_ERRORS = {c.status: c for c in (InvalidArgumentError, OutOfMemoryError, DanuIOError, FormatError, UnsupportedError,
                                 CancelledError, AbortedError, ContextFullError, BadTokenError, BadUtf8Error,
                                 StateError, BufferTooSmallError, InternalError)}


def _strerror(status):
    try:
        return _lib.get().danu_strerror(status).decode()
    except OSError:
        return "status %d" % status


def _error(status, what=None, detail=None):
    if detail is None:
        detail = _lib.get().danu_last_error().decode("utf-8", "replace")
    return _ERRORS.get(status, DanuError)(status, detail, what)


def _check(status, what=None):
    if status != OK:
        raise _error(status, what)


def _check_file(status, what, path):
    """_check for calls that read `path`: IO on a missing file raises
    DanuFileNotFoundError (a FileNotFoundError), else as _check."""
    if status == DanuIOError.status:
        detail = _lib.get().danu_last_error().decode("utf-8", "replace")
        try:
            os.stat(path)
        except FileNotFoundError:
            e = DanuFileNotFoundError(status, detail, what)
            e.errno, e.strerror, e.filename = errno.ENOENT, os.strerror(errno.ENOENT), os.fspath(path)
            raise e from None
        except OSError:
            pass
        raise _error(status, what, detail)
    _check(status, what)


def _check_int_option(name, value):
    """An int option's value must lie within danu_param_bounds (ctypes would
    silently wrap what does not fit the C int64_t: 2**64 + 5 became 5)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return
    key = _param(name)
    lo, hi = c_double(), c_double()
    if _call("danu_param_bounds", key, byref(lo), byref(hi)) != OK:
        return
    lo, hi = max(int(lo.value), -2 ** 63), min(int(hi.value), 2 ** 63 - 1)
    if not lo <= value <= hi:
        raise InvalidArgumentError(1, "option %s must be an integer in [%d, %d], got %d" % (name, lo, hi, value))


def _check_max_tokens(max_tokens):
    """max_tokens as the C API takes it: an int in [0, 2**31 - 1]."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 0 <= max_tokens <= 2 ** 31 - 1:
        raise InvalidArgumentError(1, "max_tokens must be an integer in [0, 2147483647], got %r" % (max_tokens,))


def _check_budget(budget_us):
    """A time budget as the C API takes it: an int64_t >= 0 (microseconds)."""
    if isinstance(budget_us, bool) or not isinstance(budget_us, int) or not 0 <= budget_us <= 2 ** 63 - 1:
        raise InvalidArgumentError(1, "budget_us must be an integer in [0, 2**63 - 1], got %r" % (budget_us,))


def _call(name, *args):
    lib = _lib.get()
    if name in lib.danu_missing:
        raise UnsupportedError(5, "%s is not in the loaded libdanu (%s)" % (name, lib.danu_path))
    return getattr(lib, name)(*args)


def _ids(tokens):
    tokens = list(tokens)
    return (c_int32 * max(len(tokens), 1))(*tokens), len(tokens)


def version():
    """Version of the binding."""
    return __version__


def library_version():
    """Version string of the loaded libdanu."""
    return _lib.get().danu_version_string().decode()


def param_bounds(name):
    """(min, max) of an option."""
    lo, hi = c_double(), c_double()
    _check(_call("danu_param_bounds", _param(name), byref(lo), byref(hi)), name)
    return lo.value, hi.value


def _param(name):
    name = _OPTION_ALIASES.get(name, name)
    key = _call("danu_param_from_name", name.encode())
    if key < 0:
        raise UnsupportedError(5, "unknown option %r" % name)
    return key


def _set(handle, prefix, name, value):
    """Set option `name` through danu_<prefix>_set_int/_float. Each key has one
    type and the library refuses the other setter (UNSUPPORTED, no conversion),
    so the setter follows the key: _FLOAT_OPTIONS take floats (an int value is
    converted here), the others ints (a float value must be integral). A key
    this module does not know (from a newer library) gets the setter of the
    value's type first and the other one when that is refused as the wrong
    type."""
    key = _param(name)
    canon = _OPTION_ALIASES.get(name, name)
    words = _OPTION_WORDS.get(canon)
    if isinstance(value, str) and words:
        if value not in words:
            raise InvalidArgumentError(1, "%s must be one of %s" % (name, ", ".join(words)))
        value = words[value]
    if not isinstance(value, (bool, int, float)):
        raise InvalidArgumentError(1, "option %s: expected a number, got %r" % (name, value))
    set_int, set_float = "danu_%s_set_int" % prefix, "danu_%s_set_float" % prefix
    if canon in _FLOAT_OPTIONS:
        s = _call(set_float, handle, key, float(value))
    elif canon in _KNOWN_INT_OPTIONS:
        if isinstance(value, float) and not (value.is_integer() and abs(value) < 2.0 ** 63):
            raise InvalidArgumentError(1, "option %s takes an integer, got %r" % (name, value))
        s = _call(set_int, handle, key, int(value))
    elif isinstance(value, float) and not value.is_integer():
        s = _call(set_float, handle, key, value)
    elif isinstance(value, float):
        s = _call(set_float, handle, key, value)
        if s == _ERRORS_UNSUPPORTED:
            s = _call(set_int, handle, key, int(value))
    else:
        s = _call(set_int, handle, key, int(value))
        if s == _ERRORS_UNSUPPORTED:
            s = _call(set_float, handle, key, float(value))
    _check(s, "option " + name)


_KNOWN_INT_OPTIONS = frozenset(("use_mmap", "sliding_window", "validate", "repack", "n_ctx", "kv_type", "seed",
                                "n_batch", "on_full", "n_keep", "kv_huge_pages", "top_k", "repeat_last_n", "ignore_eos",
                                "n_threads", "isa", "fast_bf16"))


_ERRORS_UNSUPPORTED = 5


def _log_callback(fn):
    if fn is None:
        return None

    def cb(user, level, message):
        try:
            fn(level, message.decode("utf-8", "replace"))
        except Exception:   # never unwind into C
            pass
    return _lib.LOG_FN(cb)


class _Options:
    """A danu_options bag for one constructor call. The callbacks are kept by
    the object that was created with it (the library stores the pointers)."""

    def __init__(self, options, log=None, progress=None, pool=None):
        self.h = c_void_p()
        _check(_call("danu_options_create", None, byref(self.h)), "options")
        self.log = _log_callback(log)
        self.progress = None
        self.progress_error = None
        try:
            for name, value in options.items():
                _check_int_option(name, value)
                _set(self.h, "options", name, value)
            if self.log:
                _check(_call("danu_options_set_log", self.h, self.log, None))
            if pool is not None:
                if not isinstance(pool, Pool):
                    raise InvalidArgumentError(1, "pool must be a danu.Pool, got %r" % (pool,))
                _check(_call("danu_options_set_pool", self.h, pool._handle()), "pool")
            if progress is not None:
                def pcb(user, fraction):
                    try:
                        return 1 if progress(fraction) else 0
                    except BaseException as e:      # cancel and re-raise after the call
                        self.progress_error = e
                        return 1
                self.progress = _lib.PROGRESS_FN(pcb)
                _check(_call("danu_options_set_progress", self.h, self.progress, None))
        except BaseException:
            self.free()
            raise

    def free(self):
        if self.h:
            _call("danu_options_free", self.h)
            self.h = c_void_p()

    def check(self, status, what):
        if self.progress_error is not None:
            raise self.progress_error
        _check(status, what)


# ---- object lifetime ----------------------------------------------------------------
class _Finalized:
    """close() when the garbage collector finalizes the object (its errors
    ignored: the interpreter may be shutting down)."""

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class _Closeable(_Finalized):
    """close() also at the end of a with statement."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- thread pools (0.2) -------------------------------------------------------------
class _HostBatch:
    """One danu_parallel_for_fn call: the C job, its data and n_items, and
    which items were claimed. run(i) runs item i unless it was claimed
    already, so each item runs exactly once however the host's parallel-for
    behaves; finish() runs the items nobody claimed on the calling thread
    and waits for those still running elsewhere."""

    __slots__ = ("job", "data", "n", "claimed", "running", "cond")

    def __init__(self, job, data, n):
        self.job, self.data, self.n = job, data, n
        self.claimed = bytearray(n)
        self.running = 0
        self.cond = threading.Condition(threading.Lock())

    def run(self, i):
        with self.cond:
            if not 0 <= i < self.n or self.claimed[i]:
                return
            self.claimed[i] = 1
            self.running += 1
        try:
            self.job(self.data, i)      # C code, without the GIL
        finally:
            with self.cond:
                self.running -= 1
                if self.running == 0:
                    self.cond.notify_all()

    def finish(self):
        for i in reversed(range(self.n)):   # from the end: workers take the items from the start
            self.run(i)
        with self.cond:
            while self.running:
                self.cond.wait()


class Pool(_Closeable):
    """A thread pool for models and contexts (libdanu 0.2).

    Pool(n_threads=0)  worker threads libdanu starts when first needed
                       (threads including the caller's; 0: the cores this
                       process may use). Share it: Model(path, pool=p),
                       Context(model, pool=p).
    Pool.host(parallel_for, n_threads)
                       libdanu starts no thread: each parallel step of an
                       evaluation calls parallel_for(job, n_items), which
                       runs job(i) for every i in range(n_items), on any
                       threads, and returns when they are done.
    Pool.from_executor(executor, n_threads)
                       Pool.host over a concurrent.futures executor.

    job(i) calls libdanu's C code through ctypes, which releases the GIL, so
    items really run in parallel on the host's threads. The binding claims
    each item once: an item parallel_for runs twice runs once, and items it
    has not run when it returns (or raises) are run on the calling thread,
    which also waits for items still running elsewhere. So the results are
    always right; an exception parallel_for raised is kept in .error (the
    first one) and the evaluation goes on.

    The Pool keeps the callback alive for as long as it exists; models and
    contexts created with it keep the Pool. close() releases the pool's own
    reference only: libdanu ends it when its last model and context are freed.
    """

    def __init__(self, n_threads=0, *, log=None):
        self._h = None
        self._cb = None
        self._parallel_for = None
        self.error = None
        self.calls = self.items = 0     # host pools only
        opts = _Options({"n_threads": n_threads}, log)
        h = c_void_p()
        try:
            _check(_call("danu_pool_create", opts.h, byref(h)), "pool")
        finally:
            opts.free()
        self._h = h
        self._log = opts.log

    @classmethod
    def host(cls, parallel_for, n_threads=0):
        """A pool on the host's job system: parallel_for(job, n_items) runs
        job(i) for each i in range(n_items) (n_items <= n_threads; 0 = the
        cores this process may use) and returns when all are done. It may be
        called by several threads at once (several contexts evaluating)."""
        if not callable(parallel_for):
            raise InvalidArgumentError(1, "parallel_for must be callable, got %r" % (parallel_for,))
        self = cls.__new__(cls)
        self._h = None
        self._log = None
        self._parallel_for = parallel_for
        self.error = None
        self.calls = 0              # parallel_for calls so far
        self.items = 0              # items they covered
        counts = threading.Lock()   # several contexts may evaluate at once

        def trampoline(user, job, data, n_items):
            batch = _HostBatch(job, data, n_items)
            try:
                with counts:
                    self.calls += 1
                    self.items += n_items
                parallel_for(batch.run, n_items)
            except BaseException as e:  # never unwind into C: keep it, run what is left here
                if self.error is None:
                    self.error = e
            finally:
                batch.finish()
        self._cb = _lib.PARALLEL_FOR_FN(trampoline)
        opts = _Options({"n_threads": n_threads})
        h = c_void_p()
        try:
            _check(_call("danu_pool_create_host", opts.h, self._cb, None, byref(h)), "pool")
        finally:
            opts.free()
        self._h = h
        return self

    @classmethod
    def from_executor(cls, executor, n_threads):
        """Pool.host over a concurrent.futures executor (ThreadPoolExecutor):
        each parallel step submits its n_items items to the executor, and the
        calling thread takes those no worker has started yet (as libdanu's
        own pools do), so a step never waits for a busy executor, even when
        it runs on one of the executor's own threads."""
        def parallel_for(job, n_items):
            for i in range(n_items):
                executor.submit(job, i)
            # returning at once: Pool.host's finish() runs the items no worker
            # claimed yet and waits for the ones that are running
        return cls.host(parallel_for, n_threads)

    def _handle(self):
        if not self._h:
            raise StateError(11, "the pool is closed")
        return self._h

    @property
    def size(self):
        """Threads the pool runs work on (host pools: the most items per call)."""
        return _call("danu_pool_size", self._handle())

    def close(self):
        """Release this reference; models and contexts using the pool keep it
        (and this object, with its callback) alive."""
        if self._h:
            _call("danu_pool_free", self._h)
            self._h = None


# ---- model --------------------------------------------------------------------------
class _Children:
    """What libdanu must free before a model: its contexts and batches.
    Model.close() closes those it can reach (objs). One the garbage collector
    finalizes together with its model (a cycle; weak references are cleared
    before finalizers run, in any order) is out of reach, so the model's own
    free waits until the last of them is closed: libdanu never sees a
    context freed after its model."""

    __slots__ = ("objs", "open", "model_h", "lock")

    def __init__(self):
        self.objs = weakref.WeakSet()
        self.open = 0               # created and not freed yet
        self.model_h = None         # the model's handle while its free waits
        self.lock = threading.Lock()

    def add(self, obj):
        with self.lock:
            self.open += 1
        self.objs.add(obj)

    def closed(self):
        with self.lock:
            self.open -= 1
            h = self.model_h if self.open == 0 else None
            if h is not None:
                self.model_h = None
        if h is not None:
            _call("danu_model_free", h)

    def free_model(self, h):
        with self.lock:
            if self.open > 0:
                self.model_h = h
                return
        _call("danu_model_free", h)


class _ModelChild(_Closeable):
    """A libdanu object freed before its model (a context, a batch):
    registered in the model's _Children at creation; close(), a with
    statement or the garbage collector frees it. Subclasses name their
    free function (_free) and what they are (_what)."""

    _free = _what = None

    def _adopt(self, model):
        self._children = model._children
        model._children.add(self)       # closed with the model, before it is freed

    def _handle(self):
        if not self._h:
            raise StateError(11, "the %s is closed" % self._what)
        return self._h

    def close(self):
        """Free the object (at most once)."""
        if self._h:
            h, self._h = self._h, None
            _call(self._free, h)
            self._children.closed()


class Model(_Closeable):
    """Weights and tokenizer of an HF directory or a GGUF file.

    Model(path, use_mmap=True, sliding_window=-1, validate=False, repack="auto", n_threads=...,
          fast_bf16=False, log=callable(level, message), progress=callable(fraction) -> cancel?,
          pool=danu.Pool)

    pool: run the model (its repacking at load and, by default, its contexts)
    on that pool instead of a pool of its own; the model keeps it alive.

    fast_bf16=True: bf16 weights multiply bf16-rounded activations on the
    AVX-512 repacked kernels (faster prompts, less exact logits; DANU_OPT_FAST_BF16).
    """

    def __init__(self, path, *, log=None, progress=None, pool=None, **options):
        self._h = None
        self._children = _Children()
        self._contexts = self._children.objs     # contexts and batches open on the model
        self._tokenizer = None
        self._pool = pool             # its parallel-for must outlive the model
        opts = _Options(options, log, progress, pool)
        h = c_void_p()
        try:
            s = _call("danu_model_load", os.fsencode(path), opts.h, byref(h))
            if opts.progress_error is None:
                _check_file(s, "load %s" % os.fspath(path), path)
            opts.check(s, "load %s" % os.fspath(path))
        finally:
            opts.free()
        self._h = h
        self._log = opts.log          # used by the model and, by default, its contexts
        self.path = os.fspath(path)

    def _handle(self):
        if not self._h:
            raise StateError(11, "the model is closed")
        return self._h

    def close(self):
        """Free the model, after closing the contexts still open on it."""
        for c in list(self._contexts):
            c.close()
        if self._h:
            h, self._h = self._h, None
            self._children.free_model(h)    # now, or once the last context being finalized is freed

    def info(self, key):
        """An integer fact by name ("vocab", "layers", "eos", ...) or DANU_INFO_* number."""
        if isinstance(key, str) and key in FLOAT_INFO:
            v = c_double()
            _check(_call("danu_model_get_float", self._handle(), FLOAT_INFO[key], byref(v)), key)
            return v.value
        if isinstance(key, str) and key not in INFO:
            raise UnknownKeyError(5, "unknown model info %r; valid names: %s"
                                  % (key, ", ".join(sorted(list(INFO) + list(FLOAT_INFO)))))
        v = c_int64()
        _check(_call("danu_model_get_int", self._handle(), INFO[key] if isinstance(key, str) else key, byref(v)),
               str(key))
        return v.value

    vocab_size = property(lambda self: self.info("vocab"))
    context_length = property(lambda self: self.info("context_length"))
    bos = property(lambda self: self.info("bos"))
    eos = property(lambda self: self.info("eos"))

    def tensors(self):
        """[(name, type name, dims)] of every tensor, as stored."""
        out = []
        for i in range(self.info("tensor_count")):
            name, typ, nd, dims = c_char_p(), c_int32(), c_int32(), (c_int64 * 4)()
            _check(_call("danu_model_tensor", self._handle(), i, byref(name), byref(typ), byref(nd), dims))
            out.append((name.value.decode(), _call("danu_type_name", typ.value).decode(), tuple(dims[:nd.value])))
        return out

    @property
    def tokenizer(self):
        """The model's tokenizer (borrowed: it keeps the model alive)."""
        if self._tokenizer is None:
            h = _call("danu_model_tokenizer", self._handle())
            if not h:
                raise UnsupportedError(5, "the model has no tokenizer")
            self._tokenizer = Tokenizer._borrowed(c_void_p(h), self)
        return self._tokenizer

    def context(self, **options):
        """Context(self, **options)."""
        return Context(self, **options)


# ---- tokenizer ----------------------------------------------------------------------
class Tokenizer(_Finalized):
    """SentencePiece tokenizer: a model's (model.tokenizer) or loaded from a tokenizer.model file."""

    def __init__(self, path):
        self._h = None
        self._owner = None
        h = c_void_p()
        _check_file(_call("danu_tokenizer_load", os.fsencode(path), None, byref(h)), "load %s" % os.fspath(path),
                    path)
        self._h = h

    @classmethod
    def _borrowed(cls, handle, owner):
        t = cls.__new__(cls)
        t._h = handle
        t._owner = owner
        return t

    def _handle(self):
        if not self._h or (self._owner is not None and not self._owner._h):
            raise StateError(11, "the tokenizer (or its model) is closed")
        return self._h

    def close(self):
        if self._h and self._owner is None:
            _call("danu_tokenizer_free", self._h)
        self._h = None

    @property
    def vocab_size(self):
        return _call("danu_tokenizer_vocab_size", self._handle())

    def encode(self, text, add_bos=True, add_eos=False, special=False):
        """UTF-8 text (str or bytes) to token ids."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        flags = (TOKENIZE_ADD_BOS if add_bos else 0) | (TOKENIZE_ADD_EOS if add_eos else 0) | \
            (TOKENIZE_PARSE_SPECIAL if special else 0)
        cap = len(data) + 4      # byte fallback: at most one id per byte, plus BOS and EOS
        while True:
            out, n = (c_int32 * cap)(), c_size_t()
            s = _call("danu_tokenizer_encode", self._handle(), data, len(data), flags, out, cap, byref(n))
            if s == BufferTooSmallError.status:
                cap = n.value
                continue
            _check(s, "encode")
            return out[:n.value]

    def decode(self, ids):
        """Token ids to text, as SentencePiece decodes a whole sequence."""
        arr, n = _ids(ids)
        cap = 16 * n + 64
        while True:
            buf, ln = ctypes.create_string_buffer(cap), c_size_t()
            s = _call("danu_tokenizer_decode", self._handle(), arr, n, buf, cap, byref(ln))
            if s == BufferTooSmallError.status:
                cap = ln.value + 1
                continue
            _check(s, "decode")
            return buf.raw[:ln.value].decode("utf-8", "replace")

    def piece(self, token):
        """The stored piece of one id (U+2581 for spaces), as bytes decoded to str."""
        p, ln = c_char_p(), c_size_t()
        _check(_call("danu_tokenizer_piece", self._handle(), token, byref(p), byref(ln)), "piece")
        return ctypes.string_at(ctypes.cast(p, c_void_p).value, ln.value).decode("utf-8", "replace")

    def chat_encode(self, messages, add_reply_prompt=True):
        """Messages in the Danube chat format to ids (BOS first)."""
        roles, contents, n = _messages(messages)
        cap = 64 + sum(len(c) + 8 for c in contents[:n])
        while True:
            out, k = (c_int32 * cap)(), c_size_t()
            s = _call("danu_chat_encode", self._handle(), roles, contents, n, int(add_reply_prompt), out, cap,
                      byref(k))
            if s == BufferTooSmallError.status:
                cap = k.value
                continue
            _check(s, "chat_encode")
            return out[:k.value]

    def decoder(self):
        return Decoder(self)


def _messages(messages):
    """[{"role", "content"}] or [(role, content)] -> two char* arrays and n."""
    pairs = []
    for m in messages:
        role, content = (m["role"], m["content"]) if isinstance(m, dict) else m
        pairs.append((role.encode(), content.encode()))
    n = len(pairs)
    roles = (c_char_p * max(n, 1))(*[p[0] for p in pairs])
    contents = (c_char_p * max(n, 1))(*[p[1] for p in pairs])
    return roles, contents, n


class Decoder(_Finalized):
    """Streaming detokenizer: push ids, get complete UTF-8 text."""

    def __init__(self, tokenizer):
        self._tok = tokenizer       # must outlive the decoder
        self._h = None
        h = c_void_p()
        _check(_call("danu_decoder_create", tokenizer._handle(), byref(h)), "decoder")
        self._h = h
        self._buf = ctypes.create_string_buffer(256)

    def push(self, token):
        ln = c_size_t()
        _check(_call("danu_decoder_push", self._h, token, self._buf, len(self._buf), byref(ln)), "decoder push")
        return self._buf.raw[:ln.value].decode("utf-8", "replace")

    def flush(self):
        ln = c_size_t()
        _check(_call("danu_decoder_flush", self._h, self._buf, len(self._buf), byref(ln)), "decoder flush")
        return self._buf.raw[:ln.value].decode("utf-8", "replace")

    def close(self):
        if self._h:
            _call("danu_decoder_free", self._h)
            self._h = None


# ---- constrained output (0.2) -------------------------------------------------------
def _schema_bytes(schema):
    """A JSON Schema as UTF-8 JSON text: str or bytes as given, else (a dict,
    a list, True/False) json.dumps of it."""
    if isinstance(schema, str):
        return schema.encode()
    if isinstance(schema, (bytes, bytearray)):
        return bytes(schema)
    try:
        return json.dumps(schema).encode()
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(1, "json_schema: not JSON-serializable: %s" % e) from None


def _tokenizer_handle(model_or_tokenizer):
    if isinstance(model_or_tokenizer, Model):
        return model_or_tokenizer.tokenizer._handle()
    if isinstance(model_or_tokenizer, Tokenizer):
        return model_or_tokenizer._handle()
    raise InvalidArgumentError(1, "a constraint is compiled for a danu.Model or danu.Tokenizer, got %r"
                               % (model_or_tokenizer,))


def _utf8(text, what):
    data = text.encode() if isinstance(text, str) else bytes(text)
    if b"\0" in data:
        raise InvalidArgumentError(1, "%s contains a NUL character" % what)
    return data


class Constraint(_Closeable):
    """A grammar compiled for a vocabulary (libdanu 0.2): the text generated
    with it attached keeps to a language. Immutable; any number of contexts
    on any threads may use one at once.

    Constraint.grammar(model_or_tokenizer, gbnf, root=None)   GBNF (llama.cpp's format)
    Constraint.json_schema(model_or_tokenizer, schema, spaces=False)
                                     schema: JSON text, or a dict/list (json.dumps)
    Constraint.choices(model_or_tokenizer, ["a", "b", ...])   exactly one of the strings

    Attach with Context.set_constraint(c), or pass grammar=, json_schema=,
    choices= to Context.generate / chat / Batch.generate. close() (or a with
    statement, or the garbage collector) drops this reference; contexts it is
    attached to keep theirs, so closing it early is fine.
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("use Constraint.grammar(), Constraint.json_schema() or Constraint.choices()")

    @classmethod
    def _make(cls, call, what, *args):
        h = c_void_p()
        _check(_call(call, *args, byref(h)), what)
        self = cls.__new__(cls)
        self._h = h
        self.kind = what
        return self

    @classmethod
    def grammar(cls, model_or_tokenizer, text, root=None):
        """Compile a GBNF grammar; root names the start rule ("root" by
        default). A syntax error raises InvalidArgumentError naming line and
        column."""
        tok = _tokenizer_handle(model_or_tokenizer)
        data = text.encode() if isinstance(text, str) else bytes(text)
        r = None if root is None else _utf8(root, "root")
        return cls._make("danu_constraint_from_grammar", "grammar", tok, data, len(data), r)

    @classmethod
    def json_schema(cls, model_or_tokenizer, schema, spaces=False):
        """Compile a JSON Schema (JSON text, or a dict / list turned into it):
        the output is one JSON value valid under it, compact unless spaces.
        A keyword libdanu cannot honour raises UnsupportedError."""
        tok = _tokenizer_handle(model_or_tokenizer)
        data = _schema_bytes(schema)
        return cls._make("danu_constraint_from_json_schema", "json_schema", tok, data, len(data),
                         SCHEMA_SPACES if spaces else 0)

    @classmethod
    def choices(cls, model_or_tokenizer, choices):
        """The language of exactly these strings (non-empty, at least one)."""
        tok = _tokenizer_handle(model_or_tokenizer)
        if isinstance(choices, (str, bytes)):
            raise InvalidArgumentError(1, "choices takes a list of strings, got %r" % (choices,))
        items = [_utf8(c, "a choice") for c in choices]
        arr = (c_char_p * max(len(items), 1))(*items)
        return cls._make("danu_constraint_from_choices", "choices", tok, arr, len(items))

    def _handle(self):
        if not self._h:
            raise StateError(11, "the constraint is closed")
        return self._h

    def close(self):
        """Drop this reference (at most once); attached contexts keep theirs."""
        if getattr(self, "_h", None):
            h, self._h = self._h, None
            _call("danu_constraint_free", h)


def json_schema_to_grammar(schema, spaces=False):
    """The GBNF grammar a JSON Schema compiles to (str); schema as for
    Constraint.json_schema."""
    data = _schema_bytes(schema)
    flags = SCHEMA_SPACES if spaces else 0
    n = c_size_t()
    s = _call("danu_json_schema_to_grammar", data, len(data), flags, None, 0, byref(n))
    if s != BufferTooSmallError.status:
        _check(s, "json_schema_to_grammar")
    while True:
        buf = ctypes.create_string_buffer(n.value + 1)
        s = _call("danu_json_schema_to_grammar", data, len(data), flags, buf, len(buf), byref(n))
        if s == BufferTooSmallError.status and n.value + 1 > len(buf):
            continue
        _check(s, "json_schema_to_grammar")
        return buf.raw[:n.value].decode("utf-8", "replace")


def _constraint_arg(model, grammar, json_schema, choices):
    """The keyword arguments grammar=, json_schema=, choices= of the generating
    calls: at most one (TypeError otherwise), compiled for model (a
    Constraint passed as any of them is used as it is). None if none."""
    given = [(k, v) for k, v in (("grammar", grammar), ("json_schema", json_schema), ("choices", choices))
             if v is not None]
    if not given:
        return None
    if len(given) > 1:
        raise TypeError("give at most one of grammar=, json_schema=, choices= (got %s)"
                        % ", ".join(k + "=" for k, _ in given))
    kind, value = given[0]
    if isinstance(value, Constraint):
        return value
    if kind == "grammar":
        return Constraint.grammar(model, value)
    if kind == "json_schema":
        return Constraint.json_schema(model, value)
    return Constraint.choices(model, value)


# ---- context ------------------------------------------------------------------------
class Step(tuple):
    """One generation step: (token, text, reason); reason is None while generation goes on."""
    __slots__ = ()

    def __new__(cls, token, text, reason):
        return tuple.__new__(cls, (token, text, reason))

    token = property(lambda self: self[0])
    text = property(lambda self: self[1])
    reason = property(lambda self: self[2])


class Context(_ModelChild):
    """KV cache, sampler and history on a model; one thread at a time.

    Context(model, n_ctx=0, n_threads=..., temperature=0.8, top_k=40, top_p=0.95,
            min_p=0.05, repeat_penalty=1.0, seed=0, kv_type="f16", on_full="error", ...,
            log=callable(level, message), pool=danu.Pool)
    Any option of danu.h by its name (danu_param_from_name), `threads` for n_threads.
    pool: evaluate on that pool (using at most n_threads of its threads) instead
    of the model's.
    """

    _free, _what = "danu_context_free", "context"

    def __init__(self, model, *, log=None, pool=None, **options):
        self._h = None
        self.model = model           # keeps the model (and its log callback) alive
        self._pool = pool            # and the pool's parallel-for
        self._stops = []
        self.stop_reason = None
        self._constraint = None      # the Constraint attached (the C context holds its own reference)
        opts = _Options(options, log, None, pool)
        h = c_void_p()
        try:
            _check(_call("danu_context_create", model._handle(), opts.h, byref(h)), "context")
        finally:
            opts.free()
        self._h = h
        self._log = opts.log
        self._buf = ctypes.create_string_buffer(_STEP_BUFFER)
        self._adopt(model)

    # settings
    def set(self, **options):
        """Sticky settings on the live context (sampling options, on_full, n_keep, seed)."""
        for name, value in options.items():
            _check_int_option(name, value)
            _set(self._handle(), "context", name, value)

    def set_logit_bias(self, token, bias):
        _check(_call("danu_context_set_logit_bias", self._handle(), token, bias), "logit bias")

    # constrained output (libdanu 0.2)
    def set_constraint(self, constraint):
        """Attach a Constraint for every later generation (each starts at the
        language's start), or remove it (None). InvalidArgumentError: compiled
        for another vocabulary; StateError: work is pending. On error the
        context keeps what it had."""
        if constraint is not None and not isinstance(constraint, Constraint):
            raise InvalidArgumentError(1, "set_constraint takes a danu.Constraint or None, got %r" % (constraint,))
        _check(_call("danu_context_set_constraint", self._handle(),
                     None if constraint is None else constraint._handle()), "set_constraint")
        self._constraint = constraint

    @property
    def constraint(self):
        """The Constraint attached with set_constraint (None if none)."""
        return self._constraint

    @property
    def constraint_state(self):
        """Where the constrained generation stands: "none" (no constraint),
        "open" (the text is not complete yet), "complete" (complete, may go
        on) or "finished" (complete, nothing can follow)."""
        v = c_int32()
        _check(_call("danu_context_constraint_state", self._handle(), byref(v)), "constraint_state")
        return CONSTRAINT_STATES.get(v.value, v.value)

    @property
    def memory_size(self):
        return _call("danu_context_memory_size", self._handle())

    # evaluation
    def eval(self, tokens, all_logits=False):
        """Append tokens and compute them. With all_logits, returns one array('f') per position."""
        arr, n = _ids(tokens)
        if not all_logits:
            _check(_call("danu_context_eval", self._handle(), arr, n, None), "eval")
            return None
        vocab = self.model.vocab_size
        out = (c_float * (n * vocab))()
        _check(_call("danu_context_eval", self._handle(), arr, n, out), "eval")
        flat = array.array("f", bytes(out))
        return [flat[i * vocab:(i + 1) * vocab] for i in range(n)]

    def prompt(self, tokens):
        """Make the cache hold exactly `tokens`, reusing the cached prefix; returns the tokens reused."""
        arr, n = _ids(tokens)
        reused = c_size_t()
        _check(_call("danu_context_prompt", self._handle(), arr, n, byref(reused)), "prompt")
        return reused.value

    @property
    def logits(self):
        """Logits of the last evaluated position (a copy, array('f')), or None before any evaluation."""
        p = _call("danu_context_logits", self._handle())
        if not p:
            return None
        return array.array("f", ctypes.string_at(p, 4 * self.model.vocab_size))

    @property
    def tokens(self):
        """The ids in the cache."""
        n = _call("danu_context_n_tokens", self._handle())
        p = _call("danu_context_tokens", self._handle())
        return p[:n] if n else []

    def __len__(self):
        return _call("danu_context_n_tokens", self._handle())

    def clear(self):
        _check(_call("danu_context_clear", self._handle()), "clear")

    def rewind(self, n):
        _check(_call("danu_context_rewind", self._handle(), n), "rewind")

    def abort(self):
        """Stop the evaluation or generation running on this context (any thread)."""
        if self._h:
            _call("danu_context_abort", self._h)

    # sampling and generation
    def sample(self):
        """Sample one id from the current logits (not appended)."""
        t = c_int32()
        _check(_call("danu_context_sample", self._handle(), byref(t)), "sample")
        return t.value

    def add_stop(self, text):
        """A stop string for every later generation (the stop string is not emitted)."""
        _check(_call("danu_context_add_stop_string", self._handle(), text.encode()), "stop string")
        self._stops.append(text)

    def clear_stops(self):
        _check(_call("danu_context_clear_stop_strings", self._handle()), "stop strings")
        self._stops = []

    def _install_stops(self, stops):
        _check(_call("danu_context_clear_stop_strings", self._handle()))
        for s in stops:
            _check(_call("danu_context_add_stop_string", self._handle(), s.encode()), "stop string")

    def step(self):
        """One bounded step: sample, evaluate, return Step(token, text, reason).
        reason is None while generation goes on, else "eos", "stop", "grammar",
        "full" or "aborted" (the last two end the generation without raising)."""
        tid, ln, why = c_int32(), c_size_t(), c_int32()
        s = _call("danu_context_step", self._handle(), byref(tid), self._buf, len(self._buf), byref(ln), byref(why))
        return self._step_result(s, tid, ln, why, "step")

    def _step_result(self, s, tid, ln, why, what):
        reason = STOP_NAMES.get(why.value) if why.value >= 0 else None
        if s != OK and not (reason in ("full", "aborted") and s in (ContextFullError.status, AbortedError.status)):
            raise _error(s, what)
        return Step(tid.value, self._buf.raw[:ln.value].decode("utf-8", "replace"), reason)

    def step_finish(self):
        """End a stepped generation early: the text held back (a partial
        character, or the start of a possible stop string), "" if none."""
        ln = c_size_t()
        s = _call("danu_context_step_finish", self._handle(), self._buf, len(self._buf), byref(ln))
        if s == BufferTooSmallError.status:   # long stop strings: the text is kept, grow and ask again
            self._buf = ctypes.create_string_buffer(ln.value + 1)
            s = _call("danu_context_step_finish", self._handle(), self._buf, len(self._buf), byref(ln))
        _check(s, "step_finish")
        return self._buf.raw[:ln.value].decode("utf-8", "replace")

    def generate(self, max_tokens=128, stop=None, *, grammar=None, json_schema=None, choices=None):
        """Iterator of text pieces generated from the current state (evaluate a
        prompt first). stop: extra stop strings for this generation. After the
        loop, .stop_reason is "length", "eos", "stop", "grammar", "full" or
        "aborted". max_tokens < 0 raises InvalidArgumentError at once.

        grammar= (GBNF text), json_schema= (JSON text or a dict) or choices=
        (a list of str), at most one (TypeError otherwise; a Constraint is
        also taken): this generation keeps to it (compiled at once, so its
        errors raise here), and the constraint attached before is back
        afterwards."""
        _check_max_tokens(max_tokens)
        constraint = _constraint_arg(self.model, grammar, json_schema, choices)
        return self._generate(max_tokens, stop, constraint)

    def _generate(self, max_tokens, stop, constraint=None):
        extra = list(stop or [])
        self.stop_reason = None
        previous = self._constraint
        if constraint is not None:
            self.set_constraint(constraint)
        try:
            if extra:
                self._install_stops(self._stops + extra)
        except BaseException:
            if constraint is not None:
                self.set_constraint(previous)
            raise
        try:
            for _ in range(max_tokens):
                st = self.step()
                if st.text:
                    yield st.text
                if st.reason is not None:
                    self.stop_reason = st.reason
                    return
            self.stop_reason = "length"
            tail = self.step_finish()   # text held back for a stop string that never came
            if tail:
                yield tail
        finally:
            if self._h:
                self.step_finish()      # also when the caller leaves the loop early
            if extra and self._h:
                self._install_stops(self._stops)
            if constraint is not None and self._h:
                self.set_constraint(previous)

    def chat_append(self, messages, add_reply_prompt=True):
        """Append messages ({"role", "content"} dicts or (role, content) pairs) in
        the Danube format; add_reply_prompt opens the assistant turn."""
        roles, contents, n = _messages(messages)
        _check(_call("danu_context_chat_append", self._handle(), roles, contents, n, int(add_reply_prompt)), "chat")

    def chat(self, messages, max_tokens=256, stop=None, stream=False, *, grammar=None, json_schema=None,
             choices=None):
        """Append messages, open the assistant turn and generate the reply: a str,
        or an iterator of pieces with stream=True. The context keeps the
        conversation; pass only the new messages next time. grammar=,
        json_schema=, choices= as for generate()."""
        _check_max_tokens(max_tokens)         # before anything is appended
        constraint = _constraint_arg(self.model, grammar, json_schema, choices)
        self.chat_append(messages, True)
        pieces = self.generate(max_tokens, stop, grammar=constraint)
        return pieces if stream else "".join(pieces)

    # work in slices (libdanu 0.2)
    def eval_begin(self, tokens):
        """Queue eval(tokens) (no all_logits) for work(); [] queues nothing."""
        arr, n = _ids(tokens)
        _check(_call("danu_context_eval_begin", self._handle(), arr, n), "eval_begin")

    def prompt_begin(self, tokens):
        """Queue prompt(tokens) for work(): the cached prefix is kept now;
        returns how many tokens it holds (as prompt() does)."""
        arr, n = _ids(tokens)
        reused = c_size_t()
        _check(_call("danu_context_prompt_begin", self._handle(), arr, n, byref(reused)), "prompt_begin")
        return reused.value

    def chat_append_begin(self, messages, add_reply_prompt=True):
        """Queue chat_append(messages, add_reply_prompt) for work(): the
        messages are encoded now (errors in them raise here)."""
        roles, contents, n = _messages(messages)
        _check(_call("danu_context_chat_append_begin", self._handle(), roles, contents, n, int(add_reply_prompt)),
               "chat_append_begin")

    def work(self, budget_us):
        """Advance the queued evaluation for about budget_us microseconds (0:
        one unit of work). True when it is finished (or nothing was pending),
        False while work remains. AbortedError after abort(); after any error
        nothing is pending."""
        _check_budget(budget_us)
        s = _call("danu_context_work", self._handle(), budget_us)
        if s == IN_PROGRESS:
            return False
        _check(s, "work")
        return True

    @property
    def pending(self):
        """Tokens of the queued work not evaluated yet (0 when nothing is pending)."""
        return _call("danu_context_pending", self._handle())

    def step_sliced(self, budget_us):
        """step() in slices: None while the token is being evaluated (call
        again), then the Step that step() returns. Finishes first any work
        queued by a *_begin call."""
        _check_budget(budget_us)
        tid, ln, why = c_int32(), c_size_t(), c_int32()
        s = _call("danu_context_step_sliced", self._handle(), budget_us, byref(tid), self._buf, len(self._buf),
                  byref(ln), byref(why))
        if s == IN_PROGRESS:
            return None
        return self._step_result(s, tid, ln, why, "step_sliced")

    # copies (libdanu 0.2)
    def copy_from(self, src):
        """Make this context a copy of src (same model): its cached tokens and
        K/V rows, logits, sampling settings and sampler state; this
        context's stop strings and logit biases stay. src is unchanged.
        InvalidArgumentError: src is this context, another model's, or does
        not fit (n_ctx too small, another kv_type; a wrapped ring of another
        size); StateError: work is pending on either. Unchanged on error."""
        if not isinstance(src, Context):
            raise InvalidArgumentError(1, "copy_from takes a danu.Context, got %r" % (src,))
        _check(_call("danu_context_copy", self._handle(), src._handle()), "copy")
        if self._constraint is not None or src._constraint is not None:   # (older libraries: no constraints)
            if self.constraint_state == "none":
                self._constraint = None
            elif self._constraint is None:
                self._constraint = src._constraint

    def fork(self):
        """A new Context with this one's options (n_ctx, kv_type, n_batch,
        threads, pool) holding a copy of it (see copy_from): it continues
        exactly as this one would. No stop strings or logit biases.
        StateError while work is pending."""
        h = c_void_p()
        _check(_call("danu_context_fork", self._handle(), byref(h)), "fork")
        c = Context.__new__(Context)
        c._h = h
        c.model = self.model
        c._pool = self._pool
        c._stops = []
        c.stop_reason = None
        c._constraint = None
        c._log = self._log          # the fork calls the same log callback
        c._buf = ctypes.create_string_buffer(_STEP_BUFFER)
        c._children = self.model._children
        self.model._children.add(c)
        if self._constraint is not None and c.constraint_state != "none":
            c._constraint = self._constraint    # the copy took the constraint along
        return c

    # state
    def save_state(self):
        """The context's state as bytes (tied to the model's shape)."""
        n = _call("danu_context_state_size", self._handle())
        buf, written = ctypes.create_string_buffer(n), c_size_t()
        _check(_call("danu_context_state_save", self._handle(), buf, n, byref(written)), "state save")
        return buf.raw[:written.value]

    def load_state(self, data):
        data = bytes(data)
        _check(_call("danu_context_state_load", self._handle(), data, len(data)), "state load")

    def save_state_file(self, path):
        _check(_call("danu_context_state_save_file", self._handle(), os.fsencode(path)), "state save")

    def load_state_file(self, path):
        _check_file(_call("danu_context_state_load_file", self._handle(), os.fsencode(path)), "state load", path)

    def checkpoint(self, keep_state=True):
        """A point to come back to: Checkpoint.restore() returns the context to
        the tokens (and logits) it holds now, as often as needed, e.g. to score
        several candidate replies from one prompt. Also a context manager:
        `with ctx.checkpoint(): ...` restores on leaving.

        restore() rewinds (no copy) when the sliding window still holds the
        positions, re-evaluating the last token for fresh logits (one
        position of work; restore(logits=False) skips that when the next call
        evaluates anyway). Past the window rewinding is impossible, so
        keep_state=True (default) also saves the state here (its size: the
        KV rows of min(n, window) positions, see README) and loads it then.
        keep_state=False skips that copy where the context cannot pass the
        window (n_ctx <= sliding_window, or no window); restore() raises
        StateError if it must. The sampler's random state is not rewound."""
        return Checkpoint(self, keep_state)


class Checkpoint:
    """Context.checkpoint(): the tokens (and whether logits were valid) of a
    context at one point, plus its saved state when keep_state."""

    def __init__(self, ctx, keep_state=True):
        self.context = ctx
        self.tokens = ctx.tokens
        self._had_logits = bool(_call("danu_context_logits", ctx._handle()))
        self._state = ctx.save_state() if keep_state else None

    def restore(self, logits=True):
        """Return the context to the checkpoint: its tokens, and its logits
        (re-evaluated) unless logits=False (then they are invalid until the
        next evaluation)."""
        c, n = self.context, len(self.tokens)
        if c.tokens[:n] == self.tokens:
            try:
                if n == 0:
                    c.clear()
                elif logits and self._had_logits:
                    c.rewind(n - 1)
                    c.eval(self.tokens[-1:])
                else:
                    c.rewind(n)
                return
            except StateError:      # the sliding window no longer holds the positions
                pass
        if self._state is None:
            raise StateError(11, "cannot return to the checkpoint of %d tokens by rewinding (past the sliding window "
                                 "or the tokens changed); take it with keep_state=True" % n)
        c.load_state(self._state)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.context._h:
            self.restore()


# ---- many contexts at once (0.2) ----------------------------------------------------
class Batch(_ModelChild):
    """Many contexts of one model advanced together (libdanu 0.2).

    Batch(model, max_contexts, n_batch=None, n_threads=None, pool=None, log=None)

    Each call runs one forward pass for up to max_contexts contexts: the
    weights are read once for all of them, while each context keeps its own
    cache, history, sampler and stop strings and produces exactly the tokens
    and text it would produce alone. n_batch: most tokens per pass (default
    512, at least max_contexts); n_threads and pool as for Context. The
    batch holds its pass's scratch (memory_size bytes); the model must
    outlive it (Model.close() closes it).

    step(contexts)      one step of each context (list of Step, or None)
    generate(contexts, max_tokens, stream=True)
                        (context, piece) events, then .stop_reasons
    """

    _free, _what = "danu_batch_free", "batch"

    def __init__(self, model, max_contexts, *, n_batch=None, n_threads=None, pool=None, log=None):
        self._h = None
        if not isinstance(model, Model):
            raise InvalidArgumentError(1, "Batch takes a danu.Model, got %r" % (model,))
        if isinstance(max_contexts, bool) or not isinstance(max_contexts, int) or not 1 <= max_contexts <= 2 ** 31 - 1:
            raise InvalidArgumentError(1, "max_contexts must be an integer >= 1, got %r" % (max_contexts,))
        self.model = model              # borrowed by the C batch: kept alive here
        self._pool = pool
        self.max_contexts = max_contexts
        self.stop_reasons = None
        options = {}
        if n_batch is not None:
            options["n_batch"] = n_batch
        if n_threads is not None:
            options["n_threads"] = n_threads
        opts = _Options(options, log, None, pool)
        h = c_void_p()
        try:
            _check(_call("danu_batch_create", model._handle(), max_contexts, opts.h, byref(h)), "batch")
        finally:
            opts.free()
        self._h = h
        self._log = opts.log
        self._adopt(model)

    @property
    def memory_size(self):
        """Bytes the batch holds (its scratch and per-context slots)."""
        return _call("danu_batch_memory_size", self._handle())

    def _contexts_arg(self, contexts):
        contexts = list(contexts)
        for c in contexts:
            if not isinstance(c, Context):
                raise InvalidArgumentError(1, "a batch takes danu.Context objects, got %r" % (c,))
        if not 1 <= len(contexts) <= self.max_contexts:
            raise InvalidArgumentError(1, "%d contexts: the batch takes 1..%d" % (len(contexts), self.max_contexts))
        return contexts

    def step(self, contexts):
        """One step of every context in one forward pass, in their order.

        Returns a list with one entry per context: the Step that
        Context.step() would return (token, text, reason; an abort or a full
        context is the reason "aborted" / "full", as for step()), or None for
        a context with work queued by eval_begin/prompt_begin/
        chat_append_begin, whose evaluation advanced instead (a token comes
        once it is finished, as with step_sliced()).

        The call's own errors leave every context as it was: a context listed
        twice, of another model, or more contexts than max_contexts raise
        InvalidArgumentError. A context's own error (StateError: no logits,
        a sliced step in flight, a generation driven by Context.step();
        BufferTooSmallError) does not stop the others: the first one is
        raised after the pass, with .results holding the whole list (the
        exception object in the failed contexts' places)."""
        self._handle()
        contexts = self._contexts_arg(contexts)
        n = len(contexts)
        items = (_lib.BatchItem * n)()
        for it, c in zip(items, contexts):
            it.struct_size = ctypes.sizeof(_lib.BatchItem)
            it.ctx = c._handle().value
            it.text = ctypes.cast(c._buf, ctypes.POINTER(ctypes.c_char))
            it.cap = len(c._buf)
        _check(_call("danu_batch_step", self._handle(), items, n), "batch step")
        results, first = [], None
        for it, c in zip(items, contexts):
            r = self._item_result(it, c)
            if isinstance(r, DanuError) and first is None:
                first = r
            results.append(r)
        if first is not None:
            first.results = results
            raise first
        return results

    @staticmethod
    def _item_result(it, c):
        """An item's outcome: a Step, None (queued work advanced) or the DanuError."""
        s, why = it.status, it.reason
        if s == IN_PROGRESS:
            return None
        reason = STOP_NAMES.get(why) if why >= 0 else None
        if s != OK and not (reason in ("full", "aborted") and s in (ContextFullError.status, AbortedError.status)):
            return _ERRORS.get(s, DanuError)(s, "", "batch step")
        return Step(it.id, c._buf.raw[:it.len].decode("utf-8", "replace"), reason)

    def generate(self, contexts, max_tokens=128, stream=True, *, grammar=None, json_schema=None, choices=None):
        """Generate with every context until each has stopped: their queued
        work first (in the same passes), then up to max_tokens tokens each,
        as Context.generate does for one (evaluate a prompt, or queue one
        with eval_begin/prompt_begin, before).

        stream=True: an iterator of (context, piece) events in the order the
        text arrives (several contexts' pieces interleave; text held back for
        a stop string arrives when it is final). stream=False: runs
        danu_batch_generate and returns the list of each context's whole
        text. Either way .stop_reasons is then one reason per context:
        "length", "eos", "stop", "grammar", "full" or "aborted" (None for
        contexts not finished when a stream is left early).

        grammar=, json_schema=, choices= (at most one, as for
        Context.generate): compiled once for the model and attached to every
        context for this call; each context's own constraint is back
        afterwards.

        Raises at once, generating nothing: InvalidArgumentError (max_tokens,
        a context listed twice or of another model), StateError (a context
        has no logits and no queued work)."""
        contexts = self._contexts_arg(contexts)
        _check_max_tokens(max_tokens)
        self._handle()
        for i, c in enumerate(contexts):
            if c in contexts[:i]:
                raise InvalidArgumentError(1, "contexts %d and %d are the same" % (contexts.index(c), i))
            if c.model is not self.model:
                raise InvalidArgumentError(1, "context %d belongs to another model" % i)
            if not _call("danu_context_logits", c._handle()) and not _call("danu_context_pending", c._handle()):
                raise StateError(11, "context %d has no logits and no queued work: evaluate a prompt first" % i)
        constraint = _constraint_arg(self.model, grammar, json_schema, choices)
        self.stop_reasons = [None] * len(contexts)
        if not stream:
            previous = self._attach(contexts, constraint)
            try:
                return self._generate_all(contexts, max_tokens)
            finally:
                self._detach(contexts, constraint, previous)
        return self._generate_stream(contexts, max_tokens, constraint)

    @staticmethod
    def _attach(contexts, constraint):
        """Attach constraint to every context (none: nothing); returns their
        previous constraints. On error the ones attached are restored."""
        previous = [c._constraint for c in contexts]
        if constraint is None:
            return previous
        done = 0
        try:
            for c in contexts:
                c.set_constraint(constraint)
                done += 1
        except BaseException:
            for c, p in zip(contexts[:done], previous):
                c.set_constraint(p)
            raise
        return previous

    @staticmethod
    def _detach(contexts, constraint, previous):
        if constraint is None:
            return
        for c, p in zip(contexts, previous):
            if c._h and not c.pending:
                c.set_constraint(p)

    def _generate_all(self, contexts, max_tokens):
        n = len(contexts)
        pieces = [[] for _ in range(n)]
        errors = []

        def cb(user, index, token, text, length):
            try:
                pieces[index].append(text[:length] if length else b"")
            except BaseException as e:      # never unwind into C: stop, re-raise after
                errors.append(e)
                return 1
            return 0
        fn = _lib.BATCH_TOKEN_FN(cb)
        handles = (c_void_p * n)(*[c._handle().value for c in contexts])
        reasons = (c_int32 * n)()
        _check(_call("danu_batch_generate", self._handle(), handles, n, max_tokens, fn, None, reasons),
               "batch generate")
        self.stop_reasons = [STOP_NAMES.get(r) for r in reasons]
        if errors:
            raise errors[0]
        return [b"".join(p).decode("utf-8", "replace") for p in pieces]

    def _generate_stream(self, contexts, max_tokens, constraint=None):
        previous = self._attach(contexts, constraint)
        try:
            yield from self._generate_steps(contexts, max_tokens)
        finally:
            self._detach(contexts, constraint, previous)

    def _generate_steps(self, contexts, max_tokens):
        # danu_batch_generate's loop, one danu_batch_step per pass, so that
        # the events can be yielded as they come
        n = len(contexts)
        for c in contexts:            # a new generation, as danu_batch_generate starts one
            if not c.pending:         # (queued work already ended the last one)
                c.step_finish()
        live = list(range(n)) if max_tokens > 0 else []
        if not live:
            self.stop_reasons = ["length"] * n
            return
        count = [0] * n
        try:
            while live:
                items = (_lib.BatchItem * len(live))()
                for it, i in zip(items, live):
                    c = contexts[i]
                    it.struct_size = ctypes.sizeof(_lib.BatchItem)
                    it.ctx = c._handle().value
                    it.text = ctypes.cast(c._buf, ctypes.POINTER(ctypes.c_char))
                    it.cap = len(c._buf)
                _check(_call("danu_batch_step", self._handle(), items, len(live)), "batch generate")
                still = []
                for it, i in zip(items, live):
                    c = contexts[i]
                    if it.status == IN_PROGRESS:
                        still.append(i)
                        continue
                    token = it.reason < 0 and it.status in (OK, BufferTooSmallError.status)
                    if it.len:
                        yield c, c._buf.raw[:it.len].decode("utf-8", "replace")
                    stop = STOP_NAMES.get(it.reason) if it.reason >= 0 else None
                    if stop is None and not token:
                        stop = "aborted"      # an error without a reason ends this context (as in C)
                    if stop is None:
                        count[i] += 1
                        if count[i] >= max_tokens:
                            stop = "length"
                    if stop is None:
                        still.append(i)
                        continue
                    self.stop_reasons[i] = stop
                    tail = c.step_finish()    # ended by length: the text held back for a stop string
                    if tail:
                        yield c, tail
                live = still
        finally:
            for i in live:                    # left early: end their generations
                if contexts[i]._h and not contexts[i].pending:
                    contexts[i].step_finish()


# ---- tools --------------------------------------------------------------------------
_TYPES = {"f32": TYPE_F32, "f16": TYPE_F16, "bf16": TYPE_BF16, "q4_0": TYPE_Q4_0, "q4_1": TYPE_Q4_1,
          "q5_0": TYPE_Q5_0, "q5_1": TYPE_Q5_1, "q8_0": TYPE_Q8_0, "q4_k": TYPE_Q4_K, "q5_k": TYPE_Q5_K,
          "q6_k": TYPE_Q6_K}


def synth_write(path, tokenizer_model, config="tiny-a", seed=7, format="gguf", type="bf16", progress=None):
    """Write a synthetic-weight model. tokenizer_model: the bytes (or path) of a Llama 2 tokenizer.model."""
    if not isinstance(tokenizer_model, (bytes, bytearray)):
        with open(tokenizer_model, "rb") as f:
            tokenizer_model = f.read()
    fmt = {"hf": FORMAT_HF, "gguf": FORMAT_GGUF}[format] if isinstance(format, str) else format
    typ = _TYPES[type] if isinstance(type, str) else type
    opts = _Options({}, None, progress)
    try:
        s = _call("danu_synth_write", config.encode(), seed, fmt, typ, bytes(tokenizer_model), len(tokenizer_model),
                  os.fsencode(path), opts.h)
        opts.check(s, "synth %s" % os.fspath(path))
    finally:
        opts.free()


def quantize(input, output, type, threads=0, progress=None):
    """Convert or quantize a model into a GGUF file ("q4_k_m", "q8_0", "f16", ...)."""
    opts = _Options({"n_threads": threads} if threads else {}, None, progress)
    try:
        s = _call("danu_quantize", os.fsencode(input), os.fsencode(output), type.encode(), opts.h)
        opts.check(s, "quantize %s" % os.fspath(input))
    finally:
        opts.free()
