"""Finding libdanu and declaring its C functions for ctypes.

The declarations below mirror include/danu.h one to one; tests/test_danu.py
parses the header and fails when they drift apart (a prototype added,
removed or changed without this file following).
"""
import ctypes
import ctypes.util
import os
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int32, c_int64,
                    c_size_t, c_uint32, c_uint64, c_void_p)

# Typedefs of danu.h.
danu_status = c_int32
danu_param = c_int32
danu_info = c_int32
danu_token = c_int32
HANDLE = c_void_p          # every opaque object: options, pool, model, tokenizer, context, decoder, batch,
                           # constraint

LOG_FN = CFUNCTYPE(None, c_void_p, c_int32, c_char_p)
PROGRESS_FN = CFUNCTYPE(c_int32, c_void_p, c_float)
TOKEN_FN = CFUNCTYPE(c_int32, c_void_p, c_int32, c_char_p, c_size_t)
# Host job systems (0.2). A JOB_FN that libdanu passes to a PARALLEL_FOR_FN
# arrives as a callable ctypes function pointer; calling it releases the GIL
# (a CFUNCTYPE pointer, not PYFUNCTYPE), so items run in parallel on threads.
JOB_FN = CFUNCTYPE(None, c_void_p, c_int32)
PARALLEL_FOR_FN = CFUNCTYPE(None, c_void_p, JOB_FN, c_void_p, c_int32)
# Many contexts at once (0.2): danu_batch_generate's callback (user, index, id, text, len).
BATCH_TOKEN_FN = CFUNCTYPE(c_int32, c_void_p, c_size_t, c_int32, c_char_p, c_size_t)

MALLOC_FN = CFUNCTYPE(c_void_p, c_void_p, c_size_t)
REALLOC_FN = CFUNCTYPE(c_void_p, c_void_p, c_void_p, c_size_t)
FREE_FN = CFUNCTYPE(None, c_void_p, c_void_p)


class Allocator(Structure):
    """danu_allocator (struct_size first; members are only appended)."""
    _fields_ = [("struct_size", c_uint32), ("malloc_fn", MALLOC_FN), ("realloc_fn", REALLOC_FN),
                ("free_fn", FREE_FN), ("user", c_void_p)]


class BatchItem(Structure):
    """danu_batch_item (0.2; struct_size first, members only appended: the
    library walks an array with a stride of items[0].struct_size)."""
    _fields_ = [("struct_size", c_size_t), ("ctx", c_void_p), ("text", POINTER(c_char)), ("cap", c_size_t),
                ("len", c_size_t), ("id", c_int32), ("reason", c_int32), ("status", c_int32)]


CALLBACK_TYPES = {"danu_log_fn": LOG_FN, "danu_progress_fn": PROGRESS_FN, "danu_token_fn": TOKEN_FN,
                  "danu_job_fn": JOB_FN, "danu_parallel_for_fn": PARALLEL_FOR_FN,
                  "danu_batch_token_fn": BATCH_TOKEN_FN}

P = POINTER
S = danu_status
# name: (restype, argtypes), in header order.
PROTOTYPES = {
    "danu_version_number": (c_uint32, ()),
    "danu_version_string": (c_char_p, ()),
    "danu_strerror": (c_char_p, (S,)),
    "danu_last_error": (c_char_p, ()),
    "danu_options_create": (S, (P(Allocator), P(HANDLE))),
    "danu_options_free": (None, (HANDLE,)),
    "danu_options_set_int": (S, (HANDLE, danu_param, c_int64)),
    "danu_options_set_float": (S, (HANDLE, danu_param, c_double)),
    "danu_options_set_log": (S, (HANDLE, LOG_FN, c_void_p)),
    "danu_options_set_progress": (S, (HANDLE, PROGRESS_FN, c_void_p)),
    "danu_pool_create": (S, (HANDLE, P(HANDLE))),                                   # 0.2
    "danu_pool_create_host": (S, (HANDLE, PARALLEL_FOR_FN, c_void_p, P(HANDLE))),   # 0.2
    "danu_pool_free": (None, (HANDLE,)),                                            # 0.2
    "danu_pool_size": (c_int32, (HANDLE,)),                                         # 0.2
    "danu_options_set_pool": (S, (HANDLE, HANDLE)),                                 # 0.2
    "danu_param_bounds": (S, (danu_param, P(c_double), P(c_double))),
    "danu_param_from_name": (danu_param, (c_char_p,)),
    "danu_type_name": (c_char_p, (c_int32,)),
    "danu_model_load": (S, (c_char_p, HANDLE, P(HANDLE))),
    "danu_model_free": (None, (HANDLE,)),
    "danu_model_get_int": (S, (HANDLE, danu_info, P(c_int64))),
    "danu_model_get_float": (S, (HANDLE, danu_info, P(c_double))),
    "danu_model_tensor": (S, (HANDLE, c_int64, P(c_char_p), P(c_int32), P(c_int32), P(c_int64))),
    "danu_model_tokenizer": (HANDLE, (HANDLE,)),
    "danu_tokenizer_load": (S, (c_char_p, HANDLE, P(HANDLE))),
    "danu_tokenizer_free": (None, (HANDLE,)),
    "danu_tokenizer_vocab_size": (c_int32, (HANDLE,)),
    "danu_tokenizer_encode": (S, (HANDLE, c_char_p, c_size_t, c_uint32, P(danu_token), c_size_t, P(c_size_t))),
    "danu_tokenizer_decode": (S, (HANDLE, P(danu_token), c_size_t, P(c_char), c_size_t, P(c_size_t))),
    "danu_tokenizer_piece": (S, (HANDLE, danu_token, P(c_char_p), P(c_size_t))),
    "danu_chat_encode": (S, (HANDLE, P(c_char_p), P(c_char_p), c_size_t, c_int32, P(danu_token), c_size_t,
                             P(c_size_t))),
    "danu_decoder_create": (S, (HANDLE, P(HANDLE))),
    "danu_decoder_free": (None, (HANDLE,)),
    "danu_decoder_push": (S, (HANDLE, danu_token, P(c_char), c_size_t, P(c_size_t))),
    "danu_decoder_flush": (S, (HANDLE, P(c_char), c_size_t, P(c_size_t))),
    "danu_context_create": (S, (HANDLE, HANDLE, P(HANDLE))),
    "danu_context_free": (None, (HANDLE,)),
    "danu_context_set_int": (S, (HANDLE, danu_param, c_int64)),
    "danu_context_set_float": (S, (HANDLE, danu_param, c_double)),
    "danu_context_set_logit_bias": (S, (HANDLE, danu_token, c_float)),
    "danu_context_memory_size": (c_size_t, (HANDLE,)),
    "danu_context_memory_estimate": (S, (HANDLE, HANDLE, P(c_size_t))),   # 0.2
    "danu_context_eval": (S, (HANDLE, P(danu_token), c_size_t, P(c_float))),
    "danu_context_prompt": (S, (HANDLE, P(danu_token), c_size_t, P(c_size_t))),
    "danu_context_logits": (P(c_float), (HANDLE,)),
    "danu_context_n_tokens": (c_size_t, (HANDLE,)),
    "danu_context_tokens": (P(danu_token), (HANDLE,)),
    "danu_context_clear": (S, (HANDLE,)),
    "danu_context_rewind": (S, (HANDLE, c_size_t)),
    "danu_context_abort": (None, (HANDLE,)),
    "danu_context_sample": (S, (HANDLE, P(danu_token))),
    "danu_context_add_stop_string": (S, (HANDLE, c_char_p)),
    "danu_context_clear_stop_strings": (S, (HANDLE,)),
    "danu_constraint_from_grammar": (S, (HANDLE, c_char_p, c_size_t, c_char_p, P(HANDLE))),          # 0.2
    "danu_constraint_from_json_schema": (S, (HANDLE, c_char_p, c_size_t, c_uint32, P(HANDLE))),     # 0.2
    "danu_constraint_from_choices": (S, (HANDLE, P(c_char_p), c_size_t, P(HANDLE))),               # 0.2
    "danu_constraint_free": (None, (HANDLE,)),                                                     # 0.2
    "danu_json_schema_to_grammar": (S, (c_char_p, c_size_t, c_uint32, P(c_char), c_size_t, P(c_size_t))),  # 0.2
    "danu_context_set_constraint": (S, (HANDLE, HANDLE)),                                          # 0.2
    "danu_context_constraint_state": (S, (HANDLE, P(c_int32))),                                    # 0.2
    "danu_context_generate": (S, (HANDLE, c_int32, TOKEN_FN, c_void_p, P(c_int32))),
    "danu_context_step": (S, (HANDLE, P(danu_token), P(c_char), c_size_t, P(c_size_t), P(c_int32))),
    "danu_context_step_finish": (S, (HANDLE, P(c_char), c_size_t, P(c_size_t))),
    "danu_context_chat_append": (S, (HANDLE, P(c_char_p), P(c_char_p), c_size_t, c_int32)),
    "danu_context_eval_begin": (S, (HANDLE, P(danu_token), c_size_t)),                          # 0.2
    "danu_context_prompt_begin": (S, (HANDLE, P(danu_token), c_size_t, P(c_size_t))),           # 0.2
    "danu_context_chat_append_begin": (S, (HANDLE, P(c_char_p), P(c_char_p), c_size_t, c_int32)),  # 0.2
    "danu_context_work": (S, (HANDLE, c_int64)),                                                # 0.2
    "danu_context_pending": (c_size_t, (HANDLE,)),                                              # 0.2
    "danu_context_step_sliced": (S, (HANDLE, c_int64, P(danu_token), P(c_char), c_size_t, P(c_size_t),
                                     P(c_int32))),                                              # 0.2
    "danu_batch_create": (S, (HANDLE, c_int32, HANDLE, P(HANDLE))),                             # 0.2
    "danu_batch_free": (None, (HANDLE,)),                                                       # 0.2
    "danu_batch_memory_size": (c_size_t, (HANDLE,)),                                            # 0.2
    "danu_batch_step": (S, (HANDLE, P(BatchItem), c_size_t)),                                   # 0.2
    "danu_batch_generate": (S, (HANDLE, P(HANDLE), c_size_t, c_int32, BATCH_TOKEN_FN, c_void_p,
                                P(c_int32))),                                                   # 0.2
    "danu_context_copy": (S, (HANDLE, HANDLE)),                                                 # 0.2
    "danu_context_fork": (S, (HANDLE, P(HANDLE))),                                              # 0.2
    "danu_context_state_size": (c_size_t, (HANDLE,)),
    "danu_context_state_save": (S, (HANDLE, c_void_p, c_size_t, P(c_size_t))),
    "danu_context_state_load": (S, (HANDLE, c_void_p, c_size_t)),
    "danu_context_state_save_file": (S, (HANDLE, c_char_p)),
    "danu_context_state_load_file": (S, (HANDLE, c_char_p)),
    "danu_synth_write": (S, (c_char_p, c_uint64, c_int32, c_int32, c_void_p, c_size_t, c_char_p, HANDLE)),
    "danu_quantize": (S, (c_char_p, c_char_p, c_char_p, HANDLE)),
}
del P, S

REQUIRED_VERSION = 100   # 0.1.0: the ABI these declarations describe

_lock = threading.Lock()
_lib = None
_tried = []


def _candidates():
    """DANU_LIBRARY, else the installed library, else a build tree above this package."""
    env = os.environ.get("DANU_LIBRARY")
    if env:
        yield env
        return
    found = ctypes.util.find_library("danu")
    if found:
        yield found
    yield "libdanu.so.0"
    here = os.path.dirname(os.path.abspath(__file__))
    d = here
    while True:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            names = []
        for n in names:
            p = os.path.join(d, n, "lib", "libdanu.so")
            if n.startswith("build") and os.path.exists(p):
                yield p
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent


def _declare(lib):
    missing = []
    for name, (res, args) in PROTOTYPES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            missing.append(name)    # an older 0.x library: calling it raises then
            continue
        fn.restype = res
        fn.argtypes = list(args)
    lib.danu_missing = frozenset(missing)
    return lib


def get():
    """The loaded, declared library (loaded on first use)."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        errors = []
        for path in _candidates():
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                errors.append("%s: %s" % (path, e))
                continue
            try:
                lib.danu_version_number.restype = c_uint32
                v = lib.danu_version_number()
            except AttributeError:
                errors.append("%s: not libdanu" % path)
                continue
            if v // 10000 != REQUIRED_VERSION // 10000 or v < REQUIRED_VERSION:
                errors.append("%s: version %d, need major %d and >= %d" % (path, v, REQUIRED_VERSION // 10000,
                                                                           REQUIRED_VERSION))
                continue
            _lib = _declare(lib)
            _lib.danu_path = path
            return _lib
        raise OSError("libdanu not found; set DANU_LIBRARY to the path of libdanu.so. Tried:\n  "
                      + "\n  ".join(errors))
