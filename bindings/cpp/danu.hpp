// danu.hpp - header-only C++17 wrapper of libdanu (danu.h).
//
// RAII, move-only handles: Options, Pool, Model, Tokenizer, Decoder, Context,
// Batch, Constraint.
// Strings go in as std::string_view; callbacks are lambdas (a trampoline
// passes them to the C callback with the lambda as `user`).
//
// Errors, with or without exceptions (-fno-exceptions): no call of this
// header throws by itself. Every fallible call returns a danu::Status or a
// danu::Result<T> (the value or the Status that prevented it, like
// std::expected): Model::load, Context::create, Options::create,
// Tokenizer::load, ... are the non-throwing API.
//   Status:    ok(), code() (danu_status), detail() (danu_last_error() at the
//              time), message() ("input/output error: /nope.gguf: cannot open ...")
//   Result<T>: ok(), code(), message(), status(), value() / * / ->, value_or()
// Only using an error as a value (value(), *, -> on a failed Result,
// Status::check()) fails: with exceptions it throws danu::Error (what() is
// the message); without them it prints "danu: unchecked error: <message>"
// to stderr and calls std::abort(). So test ok() first:
//
//     auto model = danu::Model::load("model.gguf");
//     if (!model) { std::fprintf(stderr, "%s\n", model.message().c_str()); return 1; }
//     auto ctx = danu::Context::create(*model);
//
// Generation reports how it ended as a DANU_STOP_* reason, never as an error:
// an abort (Context::abort(), from a callback or another thread) is
// DANU_STOP_ABORTED with an ok Result from generate() and an ok Status from
// step(), as the Python binding reports stop_reason "aborted" (the C call
// returns DANU_ERR_ABORTED and sets *reason = DANU_STOP_ABORTED). The context
// is then as before the aborted token: generate() again resumes.
//
// Lifetimes follow danu.h: a Model must outlive its Contexts and borrowed
// Tokenizers; a Tokenizer must outlive its Decoders.
//
// Thread pools (libdanu 0.2): danu::Pool::create(n) is a pool models and
// contexts can share (Options::set_pool, or Model::load / Context::create
// with a Pool); danu::Pool::host(fn, n) runs libdanu's parallel work on the
// application's job system. A Pool may be destroyed before the models and
// contexts created with it: they keep it (and its parallel-for) alive.
//
// Work in slices (libdanu 0.2): Context::eval_begin / prompt_begin /
// chat_append_begin queue an evaluation, Context::work(budget_us) advances it
// and returns true when it is finished (false: call again; DANU_IN_PROGRESS
// is not an error), Context::step_sliced(budget_us) is step() in slices.
//
// Many contexts at once (libdanu 0.2): danu::Batch::create(model, n) runs
// one forward pass for up to n contexts of a model (the weights read once
// for all), each producing exactly the tokens it would produce alone:
// Batch::step({&a, &b}) is one Context::step() of each (in_progress() for a
// context whose queued *_begin work advanced instead), Batch::generate(ctxs,
// max_tokens, fn) calls fn(index, id, text) as text arrives and returns each
// context's stop reason. Context::fork() is a new context holding a copy of
// one, Context::copy_from(src) makes an existing one a copy. A Batch must be
// destroyed before its Model.
//
// Constrained output (libdanu 0.2): danu::Constraint::grammar(model, gbnf),
// ::json_schema(model, schema) and ::choices(model, {"a", "b"}) compile a
// language for the model's vocabulary (move-only; a context it is attached
// to keeps its own reference, so it may be destroyed right after
// Context::set_constraint). Context::clear_constraint() removes it,
// Context::constraint_state() says where the text stands
// (DANU_CONSTRAINT_*); a generation whose text is complete and admits no
// continuation ends with DANU_STOP_GRAMMAR. danu::json_schema_to_grammar()
// is the GBNF a schema compiles to.
#ifndef DANU_HPP
#define DANU_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "danu.h"

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define DANU_HPP_EXCEPTIONS 1
#include <exception>
#include <stdexcept>
#else
#define DANU_HPP_EXCEPTIONS 0
#endif

namespace danu {

// ---- status and results --------------------------------------------------------------

// The outcome of a call: a danu_status and, on failure, danu_last_error()
// captured at once (the C text is only valid until the next call).
class Status {
public:
    Status() noexcept = default;
    static Status capture(danu_status code) {
        Status s;
        s.code_ = code;
        if (code != DANU_OK) s.detail_ = danu_last_error();
        return s;
    }
    static Status make(danu_status code, std::string detail) {
        Status s;
        s.code_ = code;
        s.detail_ = std::move(detail);
        return s;
    }
    bool ok() const noexcept { return code_ == DANU_OK; }
    explicit operator bool() const noexcept { return ok(); }
    danu_status code() const noexcept { return code_; }
    const std::string &detail() const noexcept { return detail_; }
    // "status text: detail"
    std::string message() const {
        std::string m = danu_strerror(code_);
        if (!detail_.empty()) m += ": " + detail_;
        return m;
    }
    // Throws danu::Error on failure (aborts without exceptions).
    inline const Status &check() const;

private:
    danu_status code_ = DANU_OK;
    std::string detail_;
};

#if DANU_HPP_EXCEPTIONS
class Error : public std::runtime_error {
public:
    explicit Error(Status s) : std::runtime_error(s.message()), status_(std::move(s)) {}
    const Status &status() const noexcept { return status_; }
    danu_status code() const noexcept { return status_.code(); }

private:
    Status status_;
};
#endif

// Where a failure the caller did not test for ends up: throw danu::Error,
// or without exceptions print "danu: <message>" to stderr and abort (the
// only output of this header; test ok() first to decide yourself).
[[noreturn]] inline void fail(const Status &s) {
#if DANU_HPP_EXCEPTIONS
    throw Error(s);
#else
    std::fprintf(stderr, "danu: unchecked error: %s\n", s.message().c_str());
    std::fflush(stderr);
    std::abort();
#endif
}

inline const Status &Status::check() const {
    if (!ok()) fail(*this);
    return *this;
}

// A value or the Status that prevented it.
template <class T>
class Result {
public:
    Result(T value) : value_(std::move(value)) {}                       // NOLINT: implicit on purpose
    Result(Status status) : status_(std::move(status)) {                // NOLINT
        if (status_.ok()) status_ = Status::make(DANU_ERR_INTERNAL, "Result without a value");
    }
    bool ok() const noexcept { return value_.has_value(); }
    explicit operator bool() const noexcept { return ok(); }
    const Status &status() const noexcept { return status_; }
    danu_status code() const noexcept { return status_.code(); }     // DANU_OK when ok()
    std::string message() const { return status_.message(); }       // "status text: detail"
    T &value() & { if (!ok()) fail(status_); return *value_; }
    const T &value() const & { if (!ok()) fail(status_); return *value_; }
    T &&value() && { if (!ok()) fail(status_); return std::move(*value_); }
    T value_or(T other) const & { return ok() ? *value_ : std::move(other); }
    T &operator*() & { return value(); }
    T &&operator*() && { return std::move(*this).value(); }
    T *operator->() { return &value(); }
    const T *operator->() const { return &value(); }

private:
    std::optional<T> value_;
    Status status_;
};

// What a token callback tells generate().
enum class Flow { Continue, Stop };

struct Message {
    std::string role;     // "system", "user" or "assistant"
    std::string content;
};

namespace detail {
template <class T, void (*Free)(T *)>
struct Deleter {
    void operator()(T *p) const noexcept { Free(p); }
};
using LogFn = std::function<void(int32_t level, std::string_view message)>;
using ProgressFn = std::function<bool(float fraction)>;   // true cancels

inline void log_trampoline(void *user, int32_t level, const char *message) {
    auto *fn = static_cast<LogFn *>(user);
#if DANU_HPP_EXCEPTIONS
    try { (*fn)(level, message); } catch (...) {}   // nowhere to report it: never unwind into C
#else
    (*fn)(level, message);
#endif
}

inline int32_t progress_trampoline(void *user, float fraction) {
    auto *fn = static_cast<ProgressFn *>(user);
#if DANU_HPP_EXCEPTIONS
    try { return (*fn)(fraction) ? 1 : 0; } catch (...) { return 1; }
#else
    return (*fn)(fraction) ? 1 : 0;
#endif
}

// A generation call's status that is a stop reason rather than an error: the
// C API returns ABORTED / CONTEXT_FULL together with reason ABORTED / FULL.
inline bool is_stop(danu_status s, int32_t reason) noexcept {
    return (s == DANU_ERR_ABORTED && reason == DANU_STOP_ABORTED) ||
           (s == DANU_ERR_CONTEXT_FULL && reason == DANU_STOP_FULL);
}

// The host's parallel-for of a Pool::host pool (danu_parallel_for_fn
// without the user pointer).
using ParallelFor = std::function<void(danu_job_fn job, void *data, int32_t n_items)>;

// A pool reference shared by the Pool and every Options, Model and Context
// created with it: the C pool is released, and the host's parallel-for
// freed, when the last of them goes (libdanu ends the pool itself once its
// own models and contexts are freed too, which they are before this).
struct PoolRef {
    danu_pool *pool = nullptr;
    std::unique_ptr<ParallelFor> fn;      // heap: its address is the C `user`, stable across moves
    PoolRef() = default;
    PoolRef(const PoolRef &) = delete;
    PoolRef &operator=(const PoolRef &) = delete;
    ~PoolRef() { danu_pool_free(pool); }
};

// Called from C frames: an exception cannot unwind through them, and items
// left unrun would make the results wrong, so one escaping the host's
// parallel-for ends the program (std::terminate, as noexcept does).
inline void parallel_for_trampoline(void *user, danu_job_fn job, void *data, int32_t n_items) noexcept {
    (*static_cast<ParallelFor *>(user))(job, data, n_items);
}

// Role and content pointers for the C chat calls (the strings stay in msgs).
struct ChatArrays {
    std::vector<const char *> roles, contents;
    explicit ChatArrays(const std::vector<Message> &msgs) {
        for (const Message &m : msgs) {
            roles.push_back(m.role.c_str());
            contents.push_back(m.content.c_str());
        }
    }
};
}  // namespace detail

// ---- options -------------------------------------------------------------------------

class Pool;

class Options {
public:
    static Result<Options> create(const danu_allocator *alloc = nullptr) {
        danu_options *o = nullptr;
        danu_status s = danu_options_create(alloc, &o);
        if (s != DANU_OK) return Status::capture(s);
        return Options(o);
    }
    Status set_int(danu_param key, int64_t value) { return Status::capture(danu_options_set_int(h_.get(), key, value)); }
    Status set_float(danu_param key, double value) {
        return Status::capture(danu_options_set_float(h_.get(), key, value));
    }
    // By name ("temperature", "n_ctx", ...). Each key has one type and the
    // library refuses the setter of the other (UNSUPPORTED, no conversion), so
    // the key picks the setter: the float keys of danu.h take the value as a
    // double, the others as an integer (a non-integral value is refused).
    template <class T, class = std::enable_if_t<std::is_arithmetic_v<T>>>
    Status set(std::string_view name, T value) {
        danu_param key = danu_param_from_name(std::string(name).c_str());
        if (key < 0) return Status::make(DANU_ERR_UNSUPPORTED, "unknown option " + std::string(name));
        if (is_float_key(key)) return set_float(key, static_cast<double>(value));
        if constexpr (std::is_floating_point_v<T>) {
            double d = static_cast<double>(value);   // range first: the cast is undefined outside int64
            bool integral = d >= -9.2e18 && d <= 9.2e18 && d == static_cast<double>(static_cast<int64_t>(d));
            if (!integral)
                return Status::make(DANU_ERR_INVALID_ARG, "option " + std::string(name) + " takes an integer");
        }
        return set_int(key, static_cast<int64_t>(value));
    }
    // The float keys of danu.h; every other key is an integer.
    static constexpr bool is_float_key(danu_param key) noexcept {
        return key == DANU_OPT_TEMPERATURE || key == DANU_OPT_TOP_P || key == DANU_OPT_MIN_P ||
               key == DANU_OPT_REPEAT_PENALTY || key == DANU_OPT_FREQUENCY_PENALTY || key == DANU_OPT_PRESENCE_PENALTY;
    }
    // The callback lives as long as the models/contexts created with these options.
    Status set_log(detail::LogFn fn) {
        log_ = fn ? std::make_shared<detail::LogFn>(std::move(fn)) : nullptr;
        return Status::capture(danu_options_set_log(h_.get(), log_ ? detail::log_trampoline : nullptr, log_.get()));
    }
    // fn(fraction) returns true to cancel the load.
    Status set_progress(detail::ProgressFn fn) {
        progress_ = fn ? std::make_shared<detail::ProgressFn>(std::move(fn)) : nullptr;
        return Status::capture(danu_options_set_progress(h_.get(), progress_ ? detail::progress_trampoline : nullptr,
                                                         progress_.get()));
    }
    // Run what is created with these options on pool (each Model / Context
    // keeps it alive); reset_pool() returns to the default (the model's own).
    inline Status set_pool(const Pool &pool);
    Status reset_pool() {
        pool_.reset();
        return Status::capture(danu_options_set_pool(h_.get(), nullptr));
    }
    danu_options *get() const noexcept { return h_.get(); }

private:
    explicit Options(danu_options *o) : h_(o) {}
    std::shared_ptr<detail::PoolRef> pool_;    // before h_: outlives the bag that points at it
    std::unique_ptr<danu_options, detail::Deleter<danu_options, danu_options_free>> h_;
    std::shared_ptr<detail::LogFn> log_;
    std::shared_ptr<detail::ProgressFn> progress_;
    friend class Model;
    friend class Context;
    friend class Batch;
};

// ---- thread pools (0.2) --------------------------------------------------------------

// A thread pool for models and contexts. Move-only; what was created with it
// keeps it alive, so it may go first.
class Pool {
public:
    // Worker threads libdanu starts when first needed: n_threads including
    // the caller's (0: the cores this process may run on).
    static Result<Pool> create(int32_t n_threads = 0) {
        auto opts = Options::create();
        if (!opts) return opts.status();
        Status st = opts->set_int(DANU_OPT_N_THREADS, n_threads);
        if (!st) return st;
        auto ref = std::make_shared<detail::PoolRef>();
        danu_status s = danu_pool_create(opts->get(), &ref->pool);
        if (s != DANU_OK) return Status::capture(s);
        return Pool(std::move(ref));
    }
    // A pool on the host's job system; libdanu starts no thread. Each parallel
    // step of an evaluation calls fn(job, data, n_items) (n_items <= n_threads;
    // 0: the cores this process may run on), which must call job(data, i)
    // exactly once for each i in [0, n_items), on any threads, and return when
    // all have returned; several threads may call it at once. It must not
    // throw (an exception escaping it calls std::terminate). fn is kept on the
    // heap until the pool and everything created with it are gone.
    static Result<Pool> host(detail::ParallelFor fn, int32_t n_threads = 0) {
        if (!fn) return Status::make(DANU_ERR_INVALID_ARG, "Pool::host: no parallel-for function");
        auto opts = Options::create();
        if (!opts) return opts.status();
        Status st = opts->set_int(DANU_OPT_N_THREADS, n_threads);
        if (!st) return st;
        auto ref = std::make_shared<detail::PoolRef>();
        ref->fn = std::make_unique<detail::ParallelFor>(std::move(fn));
        danu_status s = danu_pool_create_host(opts->get(), detail::parallel_for_trampoline, ref->fn.get(), &ref->pool);
        if (s != DANU_OK) return Status::capture(s);
        return Pool(std::move(ref));
    }
    Pool(Pool &&) noexcept = default;
    Pool &operator=(Pool &&) noexcept = default;
    Pool(const Pool &) = delete;
    Pool &operator=(const Pool &) = delete;

    // Threads the pool runs work on (host pools: the most items per call).
    int32_t size() const noexcept { return danu_pool_size(get()); }
    danu_pool *get() const noexcept { return ref_ ? ref_->pool : nullptr; }

private:
    explicit Pool(std::shared_ptr<detail::PoolRef> ref) : ref_(std::move(ref)) {}
    std::shared_ptr<detail::PoolRef> ref_;
    friend class Options;
};

inline Status Options::set_pool(const Pool &pool) {
    danu_status s = danu_options_set_pool(h_.get(), pool.get());
    if (s == DANU_OK) pool_ = pool.ref_;
    return Status::capture(s);
}

// ---- tokenizer -----------------------------------------------------------------------

class Tokenizer {
public:
    static Result<Tokenizer> load(std::string_view path) {
        danu_tokenizer *t = nullptr;
        danu_status s = danu_tokenizer_load(std::string(path).c_str(), nullptr, &t);
        if (s != DANU_OK) return Status::capture(s);
        return Tokenizer(t, true);
    }
    Tokenizer(Tokenizer &&o) noexcept : t_(std::exchange(o.t_, nullptr)), owned_(o.owned_) {}
    Tokenizer &operator=(Tokenizer &&o) noexcept {
        if (this != &o) { reset(); t_ = std::exchange(o.t_, nullptr); owned_ = o.owned_; }
        return *this;
    }
    Tokenizer(const Tokenizer &) = delete;
    Tokenizer &operator=(const Tokenizer &) = delete;
    ~Tokenizer() { reset(); }

    int32_t vocab_size() const noexcept { return danu_tokenizer_vocab_size(t_); }

    Status encode(std::string_view text, uint32_t flags, std::vector<danu_token> &out) const {
        out.resize(text.size() + 4);   // byte fallback: one id per byte at most, plus BOS/EOS
        size_t n = 0;
        danu_status s = danu_tokenizer_encode(t_, text.data(), text.size(), flags, out.data(), out.size(), &n);
        if (s == DANU_ERR_BUFFER_TOO_SMALL) {
            out.resize(n);
            s = danu_tokenizer_encode(t_, text.data(), text.size(), flags, out.data(), out.size(), &n);
        }
        out.resize(s == DANU_OK ? n : 0);
        return Status::capture(s);
    }
    Result<std::vector<danu_token>> encode(std::string_view text, uint32_t flags = DANU_TOKENIZE_ADD_BOS) const {
        std::vector<danu_token> ids;
        Status s = encode(text, flags, ids);
        if (!s) return s;
        return ids;
    }
    Result<std::string> decode(const danu_token *ids, size_t n) const {
        std::string out(16 * n + 64, '\0');
        size_t len = 0;
        danu_status s = danu_tokenizer_decode(t_, ids, n, out.data(), out.size(), &len);
        if (s == DANU_ERR_BUFFER_TOO_SMALL) {
            out.resize(len + 1);
            s = danu_tokenizer_decode(t_, ids, n, out.data(), out.size(), &len);
        }
        if (s != DANU_OK) return Status::capture(s);
        out.resize(len);
        return out;
    }
    Result<std::string> decode(const std::vector<danu_token> &ids) const { return decode(ids.data(), ids.size()); }
    // The stored piece (borrowed from the tokenizer).
    Result<std::string_view> piece(danu_token id) const {
        const char *p = nullptr;
        size_t len = 0;
        danu_status s = danu_tokenizer_piece(t_, id, &p, &len);
        if (s != DANU_OK) return Status::capture(s);
        return std::string_view(p, len);
    }
    Result<std::vector<danu_token>> chat_encode(const std::vector<Message> &msgs, bool add_reply_prompt = true) const {
        detail::ChatArrays a(msgs);
        size_t n = 0;
        std::vector<danu_token> ids(64);
        danu_status s = danu_chat_encode(t_, a.roles.data(), a.contents.data(), msgs.size(), add_reply_prompt,
                                         ids.data(), ids.size(), &n);
        if (s == DANU_ERR_BUFFER_TOO_SMALL) {
            ids.resize(n);
            s = danu_chat_encode(t_, a.roles.data(), a.contents.data(), msgs.size(), add_reply_prompt, ids.data(),
                                 ids.size(), &n);
        }
        if (s != DANU_OK) return Status::capture(s);
        ids.resize(n);
        return ids;
    }
    const danu_tokenizer *get() const noexcept { return t_; }

private:
    Tokenizer(const danu_tokenizer *t, bool owned) : t_(t), owned_(owned) {}
    void reset() noexcept {
        if (owned_ && t_) danu_tokenizer_free(const_cast<danu_tokenizer *>(t_));
        t_ = nullptr;
    }
    const danu_tokenizer *t_ = nullptr;
    bool owned_ = false;
    friend class Model;
};

class Decoder {
public:
    static Result<Decoder> create(const Tokenizer &tok) {
        danu_decoder *d = nullptr;
        danu_status s = danu_decoder_create(tok.get(), &d);
        if (s != DANU_OK) return Status::capture(s);
        return Decoder(d);
    }
    // The complete UTF-8 text id finishes (often empty mid-character).
    Result<std::string> push(danu_token id) {
        char buf[256];
        size_t len = 0;
        danu_status s = danu_decoder_push(h_.get(), id, buf, sizeof buf, &len);
        if (s != DANU_OK) return Status::capture(s);
        return std::string(buf, len);
    }
    Result<std::string> flush() {
        char buf[256];
        size_t len = 0;
        danu_status s = danu_decoder_flush(h_.get(), buf, sizeof buf, &len);
        if (s != DANU_OK) return Status::capture(s);
        return std::string(buf, len);
    }
    danu_decoder *get() const noexcept { return h_.get(); }

private:
    explicit Decoder(danu_decoder *d) : h_(d) {}
    std::unique_ptr<danu_decoder, detail::Deleter<danu_decoder, danu_decoder_free>> h_;
};

// ---- model ---------------------------------------------------------------------------

class Model {
public:
    static Result<Model> load(std::string_view path, const Options *opts = nullptr) {
        danu_model *m = nullptr;
        danu_status s = danu_model_load(std::string(path).c_str(), opts ? opts->get() : nullptr, &m);
        if (s != DANU_OK) return Status::capture(s);
        Model model(m);
        if (opts) {
            model.log_ = opts->log_;    // the model calls it for its lifetime
            model.pool_ = opts->pool_;  // and runs on that pool
        }
        return model;
    }
    // Load with default options on pool (repacking on it; contexts use it).
    static Result<Model> load(std::string_view path, const Pool &pool) {
        auto opts = Options::create();
        if (!opts) return opts.status();
        Status s = opts->set_pool(pool);
        if (!s) return s;
        return load(path, &*opts);
    }
    Result<int64_t> info(danu_info key) const {
        int64_t v = 0;
        danu_status s = danu_model_get_int(h_.get(), key, &v);
        if (s != DANU_OK) return Status::capture(s);
        return v;
    }
    Result<double> info_float(danu_info key) const {
        double v = 0;
        danu_status s = danu_model_get_float(h_.get(), key, &v);
        if (s != DANU_OK) return Status::capture(s);
        return v;
    }
    int32_t vocab_size() const { return static_cast<int32_t>(info(DANU_INFO_VOCAB).value_or(0)); }
    // The model's tokenizer, borrowed: valid while the model lives.
    Tokenizer tokenizer() const { return Tokenizer(danu_model_tokenizer(h_.get()), false); }
    danu_model *get() const noexcept { return h_.get(); }

private:
    explicit Model(danu_model *m) : h_(m) {}
    std::shared_ptr<detail::PoolRef> pool_;   // before h_: released after the model is freed
    std::unique_ptr<danu_model, detail::Deleter<danu_model, danu_model_free>> h_;
    std::shared_ptr<detail::LogFn> log_;
    friend class Context;
    friend class Batch;
};

// ---- constrained output (0.2) --------------------------------------------------------

// A grammar compiled for one vocabulary: immutable, shared by any number of
// contexts on any threads. Syntax errors come back as DANU_ERR_INVALID_ARG
// with line and column in detail(); a JSON Schema keyword libdanu cannot
// honour as DANU_ERR_UNSUPPORTED naming it.
class Constraint {
public:
    // A GBNF grammar (llama.cpp's format); root: the start rule ("root" when empty).
    static Result<Constraint> grammar(const Tokenizer &tok, std::string_view gbnf, std::string_view root = {}) {
        danu_constraint *c = nullptr;
        std::string r(root);
        danu_status s = danu_constraint_from_grammar(tok.get(), gbnf.data(), gbnf.size(),
                                                     r.empty() ? nullptr : r.c_str(), &c);
        if (s != DANU_OK) return Status::capture(s);
        return Constraint(c);
    }
    static Result<Constraint> grammar(const Model &model, std::string_view gbnf, std::string_view root = {}) {
        return grammar(model.tokenizer(), gbnf, root);
    }
    // A JSON Schema (JSON text): one JSON value valid under it, compact
    // unless flags has DANU_SCHEMA_SPACES.
    static Result<Constraint> json_schema(const Tokenizer &tok, std::string_view schema, uint32_t flags = 0) {
        danu_constraint *c = nullptr;
        danu_status s = danu_constraint_from_json_schema(tok.get(), schema.data(), schema.size(), flags, &c);
        if (s != DANU_OK) return Status::capture(s);
        return Constraint(c);
    }
    static Result<Constraint> json_schema(const Model &model, std::string_view schema, uint32_t flags = 0) {
        return json_schema(model.tokenizer(), schema, flags);
    }
    // Exactly one of these strings (each non-empty; at least one).
    static Result<Constraint> choices(const Tokenizer &tok, const std::vector<std::string> &list) {
        std::vector<const char *> p;
        p.reserve(list.size());
        for (const std::string &c : list) p.push_back(c.c_str());
        danu_constraint *c = nullptr;
        danu_status s = danu_constraint_from_choices(tok.get(), p.empty() ? nullptr : p.data(), p.size(), &c);
        if (s != DANU_OK) return Status::capture(s);
        return Constraint(c);
    }
    static Result<Constraint> choices(const Model &model, const std::vector<std::string> &list) {
        return Constraint::choices(model.tokenizer(), list);
    }
    danu_constraint *get() const noexcept { return h_.get(); }

private:
    explicit Constraint(danu_constraint *c) : h_(c) {}
    std::unique_ptr<danu_constraint, detail::Deleter<danu_constraint, danu_constraint_free>> h_;
};

// The GBNF grammar a JSON Schema compiles to.
inline Result<std::string> json_schema_to_grammar(std::string_view schema, uint32_t flags = 0) {
    size_t len = 0;
    danu_status s = danu_json_schema_to_grammar(schema.data(), schema.size(), flags, nullptr, 0, &len);
    if (s != DANU_ERR_BUFFER_TOO_SMALL) return Status::capture(s == DANU_OK ? DANU_ERR_INTERNAL : s);
    std::string out(len + 1, '\0');
    s = danu_json_schema_to_grammar(schema.data(), schema.size(), flags, out.data(), out.size(), &len);
    if (s != DANU_OK) return Status::capture(s);
    out.resize(len);
    return out;
}

// ---- context -------------------------------------------------------------------------

// Context::checkpoint(): the tokens of a context at one point, whether its
// logits were valid, and (keep_state) its saved state. Context::restore()
// returns to it, as often as needed.
struct Checkpoint {
    std::vector<danu_token> tokens;
    bool had_logits = false;
    std::vector<uint8_t> state;   // empty without keep_state
};

struct Step {
    danu_token token = -1;
    std::string text;
    int32_t reason = -1;    // -1 while generation goes on, else DANU_STOP_*
    bool done() const noexcept { return reason >= 0; }
};

class Context {
public:
    static Result<Context> create(Model &model, const Options *opts = nullptr) {
        danu_context *c = nullptr;
        danu_status s = danu_context_create(model.get(), opts ? opts->get() : nullptr, &c);
        if (s != DANU_OK) return Status::capture(s);
        Context ctx(c, model.vocab_size());
        ctx.log_ = opts && opts->log_ ? opts->log_ : model.log_;
        if (opts) ctx.pool_ = opts->pool_;
        return ctx;
    }
    // Create with default options on pool instead of the model's.
    static Result<Context> create(Model &model, const Pool &pool) {
        auto opts = Options::create();
        if (!opts) return opts.status();
        Status s = opts->set_pool(pool);
        if (!s) return s;
        return create(model, &*opts);
    }
    Status set_int(danu_param key, int64_t v) { return Status::capture(danu_context_set_int(h_.get(), key, v)); }
    Status set_float(danu_param key, double v) { return Status::capture(danu_context_set_float(h_.get(), key, v)); }
    Status set_logit_bias(danu_token id, float bias) {
        return Status::capture(danu_context_set_logit_bias(h_.get(), id, bias));
    }
    size_t memory_size() const noexcept { return danu_context_memory_size(h_.get()); }

    Status eval(const danu_token *ids, size_t n, float *all_logits = nullptr) {
        return Status::capture(danu_context_eval(h_.get(), ids, n, all_logits));
    }
    Status eval(const std::vector<danu_token> &ids) { return eval(ids.data(), ids.size()); }
    Result<size_t> prompt(const std::vector<danu_token> &ids) {
        size_t reused = 0;
        danu_status s = danu_context_prompt(h_.get(), ids.data(), ids.size(), &reused);
        if (s != DANU_OK) return Status::capture(s);
        return reused;
    }
    // Borrowed: valid until the next call that evaluates; nullptr before any.
    const float *logits() const noexcept { return danu_context_logits(h_.get()); }
    int32_t vocab_size() const noexcept { return vocab_; }
    size_t n_tokens() const noexcept { return danu_context_n_tokens(h_.get()); }
    std::vector<danu_token> tokens() const {
        const danu_token *p = danu_context_tokens(h_.get());
        return p ? std::vector<danu_token>(p, p + n_tokens()) : std::vector<danu_token>();
    }
    Status clear() { return Status::capture(danu_context_clear(h_.get())); }
    Status rewind(size_t n) { return Status::capture(danu_context_rewind(h_.get(), n)); }
    // Safe from any thread while another one evaluates or generates.
    void abort() noexcept { danu_context_abort(h_.get()); }

    Result<danu_token> sample() {
        danu_token t = -1;
        danu_status s = danu_context_sample(h_.get(), &t);
        if (s != DANU_OK) return Status::capture(s);
        return t;
    }
    Status add_stop(std::string_view s) {
        return Status::capture(danu_context_add_stop_string(h_.get(), std::string(s).c_str()));
    }
    Status clear_stops() { return Status::capture(danu_context_clear_stop_strings(h_.get())); }

    // Attach a constraint (0.2): every later generation keeps to its
    // language. The context takes its own reference, so c may be destroyed
    // afterwards. DANU_ERR_INVALID_ARG: compiled for another vocabulary;
    // DANU_ERR_STATE: work pending. On error the context keeps what it had.
    Status set_constraint(const Constraint &c) {
        return Status::capture(danu_context_set_constraint(h_.get(), c.get()));
    }
    Status clear_constraint() { return Status::capture(danu_context_set_constraint(h_.get(), nullptr)); }
    // DANU_CONSTRAINT_NONE, _OPEN, _COMPLETE or _FINISHED.
    int32_t constraint_state() const noexcept {
        int32_t st = DANU_CONSTRAINT_NONE;
        if (danu_context_constraint_state(h_.get(), &st) != DANU_OK) return DANU_CONSTRAINT_NONE;
        return st;
    }

    // One bounded step. An abort or a full context ends generation with
    // out.reason DANU_STOP_ABORTED / DANU_STOP_FULL and an ok status (as
    // generate() and the Python binding report them), not an error.
    Status step(Step &out) {
        char buf[4096];
        size_t len = 0;
        danu_status s = danu_context_step(h_.get(), &out.token, buf, sizeof buf, &len, &out.reason);
        out.text.assign(buf, len);
        if (detail::is_stop(s, out.reason)) return Status();
        return Status::capture(s);
    }
    Result<Step> step() {
        Step st;
        Status s = step(st);
        if (!s) return s;
        return st;
    }
    // End a stepped generation early: the text held back (a partial UTF-8
    // character or the start of a possible stop string), empty if none.
    Result<std::string> step_finish() {
        std::string text(64, '\0');
        size_t len = 0;
        danu_status s = danu_context_step_finish(h_.get(), text.data(), text.size(), &len);
        if (s == DANU_ERR_BUFFER_TOO_SMALL) {   // kept by the library: grow and ask again
            text.resize(len + 1);
            s = danu_context_step_finish(h_.get(), text.data(), text.size(), &len);
        }
        if (s != DANU_OK) return Status::capture(s);
        text.resize(len);
        return text;
    }

    // Generate up to max_tokens from the current state; fn(id, text) is
    // called per piece (id -1 for text flushed at the end) and returns void
    // or danu::Flow. Returns the DANU_STOP_* reason. An abort
    // (danu_context_abort, from the callback or another thread) is the reason
    // DANU_STOP_ABORTED, a full context (ON_FULL error) DANU_STOP_FULL: not an
    // error status. After an abort the context is as before the aborted
    // token, so calling generate() again resumes.
    template <class F>
    Result<int32_t> generate(int32_t max_tokens, F &&fn) {
        struct Box {
            std::remove_reference_t<F> *fn = nullptr;
#if DANU_HPP_EXCEPTIONS
            std::exception_ptr error{};
#endif
        } box;
        box.fn = &fn;
        auto tramp = [](void *user, danu_token id, const char *text, size_t len) -> int32_t {
            Box *b = static_cast<Box *>(user);
#if DANU_HPP_EXCEPTIONS
            try {
#endif
                if constexpr (std::is_void_v<std::invoke_result_t<std::remove_reference_t<F> &, danu_token,
                                                                  std::string_view>>) {
                    (*b->fn)(id, std::string_view(text, len));
                    return 0;
                } else {
                    return (*b->fn)(id, std::string_view(text, len)) == Flow::Stop ? 1 : 0;
                }
#if DANU_HPP_EXCEPTIONS
            } catch (...) {   // stop, then rethrow on this side of the C frames
                b->error = std::current_exception();
                return 1;
            }
#endif
        };
        int32_t reason = DANU_STOP_LENGTH;
        danu_status s = danu_context_generate(h_.get(), max_tokens, tramp, &box, &reason);
#if DANU_HPP_EXCEPTIONS
        if (box.error) std::rethrow_exception(box.error);
#endif
        if (s != DANU_OK && !detail::is_stop(s, reason)) return Status::capture(s);
        return reason;
    }

    Status chat_append(const std::vector<Message> &msgs, bool add_reply_prompt = true) {
        detail::ChatArrays a(msgs);
        return Status::capture(
            danu_context_chat_append(h_.get(), a.roles.data(), a.contents.data(), msgs.size(), add_reply_prompt));
    }

    // ---- work in slices (0.2) ----
    // Queue eval(ids) (tokens copied); work() runs it. Refused with
    // DANU_ERR_STATE while work is pending, as are the calls that evaluate,
    // sample or change the cache; clear() drops pending work.
    Status eval_begin(const danu_token *ids, size_t n) {
        return Status::capture(danu_context_eval_begin(h_.get(), ids, n));
    }
    Status eval_begin(const std::vector<danu_token> &ids) { return eval_begin(ids.data(), ids.size()); }
    // Queue prompt(ids): the cached prefix is kept now; returns its length.
    Result<size_t> prompt_begin(const std::vector<danu_token> &ids) {
        size_t reused = 0;
        danu_status s = danu_context_prompt_begin(h_.get(), ids.data(), ids.size(), &reused);
        if (s != DANU_OK) return Status::capture(s);
        return reused;
    }
    // Queue chat_append(msgs): encoded now, evaluated by work().
    Status chat_append_begin(const std::vector<Message> &msgs, bool add_reply_prompt = true) {
        detail::ChatArrays a(msgs);
        return Status::capture(danu_context_chat_append_begin(h_.get(), a.roles.data(), a.contents.data(),
                                                              msgs.size(), add_reply_prompt));
    }
    // Advance the queued work for about budget_us microseconds (0: one unit):
    // true when finished (or nothing was pending), false while work remains.
    // After abort() it fails with DANU_ERR_ABORTED; after any error nothing
    // is pending.
    Result<bool> work(int64_t budget_us) {
        danu_status s = danu_context_work(h_.get(), budget_us);
        if (s == DANU_IN_PROGRESS) return false;
        if (s != DANU_OK) return Status::capture(s);
        return true;
    }
    // Tokens of the queued work not evaluated yet (a step in flight counts 1).
    size_t pending() const noexcept { return danu_context_pending(h_.get()); }
    // step() in slices: false while the token is being evaluated (call
    // again), true when out holds what step() gives (an abort or a full
    // context is out.reason, not an error, as for step()).
    Result<bool> step_sliced(int64_t budget_us, Step &out) {
        char buf[4096];
        size_t len = 0;
        danu_status s = danu_context_step_sliced(h_.get(), budget_us, &out.token, buf, sizeof buf, &len, &out.reason);
        out.text.assign(buf, len);
        if (s == DANU_IN_PROGRESS) return false;
        if (s != DANU_OK && !detail::is_stop(s, out.reason)) return Status::capture(s);
        return true;
    }
    // The same, as an optional: empty while in progress.
    Result<std::optional<Step>> step_sliced(int64_t budget_us) {
        Step st;
        auto done = step_sliced(budget_us, st);
        if (!done) return done.status();
        if (!*done) return std::optional<Step>();
        return std::optional<Step>(std::move(st));
    }

    Result<std::vector<uint8_t>> save_state() const {
        std::vector<uint8_t> buf(danu_context_state_size(h_.get()));
        size_t written = 0;
        danu_status s = danu_context_state_save(h_.get(), buf.data(), buf.size(), &written);
        if (s != DANU_OK) return Status::capture(s);
        buf.resize(written);
        return buf;
    }
    Status load_state(const void *data, size_t len) {
        return Status::capture(danu_context_state_load(h_.get(), data, len));
    }
    Status load_state(const std::vector<uint8_t> &b) { return load_state(b.data(), b.size()); }
    Status save_state_file(std::string_view path) const {
        return Status::capture(danu_context_state_save_file(h_.get(), std::string(path).c_str()));
    }
    Status load_state_file(std::string_view path) {
        return Status::capture(danu_context_state_load_file(h_.get(), std::string(path).c_str()));
    }
    // A point to come back to, e.g. to score several candidate replies from
    // one prompt: restore() rewinds (no copy) while the sliding window still
    // holds the positions and re-evaluates the last token for fresh logits
    // (one position of work; logits = false skips that when the next call
    // evaluates anyway). Past the window rewinding is impossible, so
    // keep_state (default) also saves the state now (the KV rows of
    // min(n, window) positions, see README) and restore() loads it then;
    // without it restore() returns DANU_ERR_STATE there. The sampler's random
    // state is not rewound.
    Result<Checkpoint> checkpoint(bool keep_state = true) const {
        Checkpoint cp;
        cp.tokens = tokens();
        cp.had_logits = logits() != nullptr;
        if (keep_state) {
            auto st = save_state();
            if (!st) return st.status();
            cp.state = std::move(*st);
        }
        return cp;
    }
    Status restore(const Checkpoint &cp, bool logits = true) {
        const size_t n = cp.tokens.size();
        const danu_token *now = danu_context_tokens(h_.get());
        if (n_tokens() >= n && (n == 0 || std::equal(cp.tokens.begin(), cp.tokens.end(), now))) {
            Status s;
            if (n == 0) s = clear();
            else if (logits && cp.had_logits) {
                s = rewind(n - 1);
                if (s) return eval(&cp.tokens[n - 1], 1);
            } else
                s = rewind(n);
            if (s.code() != DANU_ERR_STATE) return s;   // done, or an error rewinding cannot avoid
        }
        if (cp.state.empty())
            return Status::make(DANU_ERR_STATE, "cannot return to the checkpoint by rewinding (past the sliding "
                                                "window or the tokens changed); take it with keep_state");
        return load_state(cp.state);
    }

    // ---- copies (0.2) ----
    // Make this context a copy of src (same model): the cached tokens and
    // their K/V rows, the logits, sampling settings and sampler state; this
    // context's stop strings and logit biases stay. DANU_ERR_INVALID_ARG:
    // src is this context, of another model, or does not fit (n_ctx too
    // small, another KV type, a wrapped ring of another size);
    // DANU_ERR_STATE: work pending on either. Unchanged on error.
    Status copy_from(const Context &src) { return Status::capture(danu_context_copy(h_.get(), src.h_.get())); }
    // A new context with this one's options (n_ctx, KV type, batch, threads,
    // pool) holding a copy of it: it continues exactly as this one would.
    // No stop strings or logit biases. DANU_ERR_STATE while work is pending.
    Result<Context> fork() const {
        danu_context *c = nullptr;
        danu_status s = danu_context_fork(h_.get(), &c);
        if (s != DANU_OK) return Status::capture(s);
        Context ctx(c, vocab_);
        ctx.log_ = log_;     // the fork calls the same log callback
        ctx.pool_ = pool_;   // and runs on the same pool
        return ctx;
    }

    danu_context *get() const noexcept { return h_.get(); }

private:
    Context(danu_context *c, int32_t vocab) : h_(c), vocab_(vocab) {}
    std::shared_ptr<detail::PoolRef> pool_;   // before h_: released after the context is freed
    std::unique_ptr<danu_context, detail::Deleter<danu_context, danu_context_free>> h_;
    std::shared_ptr<detail::LogFn> log_;
    int32_t vocab_ = 0;
};

// ---- many contexts at once (0.2) -----------------------------------------------------

// One context's outcome of Batch::step. status is DANU_OK for a step (token,
// text, reason as Context::step gives them: an abort or a full context is
// reason DANU_STOP_ABORTED / DANU_STOP_FULL with an ok status),
// DANU_IN_PROGRESS when the context's queued work advanced instead (no
// token yet), or that context's own error (DANU_ERR_STATE: no logits, a
// sliced step in flight, a generation driven by Context::step;
// DANU_ERR_BUFFER_TOO_SMALL), which does not stop the others.
struct BatchStep : Step {
    danu_status status = DANU_OK;
    bool ok() const noexcept { return status == DANU_OK; }
    bool in_progress() const noexcept { return status == DANU_IN_PROGRESS; }
};

// Many contexts of one model advanced together. Move-only; must be
// destroyed before its Model. One call at a time per batch, and a context in
// one batch call at a time.
class Batch {
public:
    // Up to max_contexts contexts per call. opts: DANU_OPT_N_BATCH (most
    // tokens per pass, default 512, at least max_contexts),
    // DANU_OPT_N_THREADS, a pool, a log callback; nullptr = defaults.
    static Result<Batch> create(Model &model, int32_t max_contexts, const Options *opts = nullptr) {
        danu_batch *b = nullptr;
        danu_status s = danu_batch_create(model.get(), max_contexts, opts ? opts->get() : nullptr, &b);
        if (s != DANU_OK) return Status::capture(s);
        Batch batch(b, max_contexts);
        batch.log_ = opts && opts->log_ ? opts->log_ : model.log_;
        if (opts) batch.pool_ = opts->pool_;
        return batch;
    }
    // Bytes the batch holds (its scratch and per-context slots).
    size_t memory_size() const noexcept { return danu_batch_memory_size(h_.get()); }
    int32_t max_contexts() const noexcept { return max_; }

    // One step of every context in one forward pass; out[i] is ctxs[i]'s
    // outcome (see BatchStep). The returned Status is the call's own: an
    // error there (DANU_ERR_INVALID_ARG: a context null, listed twice, of
    // another model, n outside 1..max_contexts) leaves every context as it
    // was and out empty.
    Status step(Context *const *ctxs, size_t n, std::vector<BatchStep> &out) {
        out.clear();
        std::vector<danu_batch_item> items(n);
        if (text_.size() < n * kText) text_.resize(n * kText);   // n above max_contexts: refused by the call
        for (size_t i = 0; i < n; i++) {
            items[i].struct_size = sizeof(danu_batch_item);
            items[i].ctx = ctxs[i] ? ctxs[i]->get() : nullptr;
            items[i].text = text_.data() + i * kText;
            items[i].cap = kText;
        }
        danu_status s = danu_batch_step(h_.get(), n ? items.data() : nullptr, n);
        if (s != DANU_OK) return Status::capture(s);
        out.resize(n);
        for (size_t i = 0; i < n; i++) {
            const danu_batch_item &it = items[i];
            BatchStep &r = out[i];
            r.token = it.id;
            r.reason = it.reason;
            r.text.assign(it.text, it.len);
            r.status = detail::is_stop(it.status, it.reason) ? DANU_OK : it.status;
        }
        return Status();
    }
    Status step(const std::vector<Context *> &ctxs, std::vector<BatchStep> &out) {
        return step(ctxs.data(), ctxs.size(), out);
    }
    Result<std::vector<BatchStep>> step(const std::vector<Context *> &ctxs) {
        std::vector<BatchStep> out;
        Status s = step(ctxs, out);
        if (!s) return s;
        return out;
    }

    // Generate with every context until each has stopped: their queued work
    // first (in the same passes), then up to max_tokens tokens each, as
    // Context::generate does for one. fn(index, id, text) is called as text
    // of ctxs[index] becomes final (id -1 for text flushed at the end); it
    // returns bool (true stops that context: DANU_STOP_CALLBACK), danu::Flow,
    // or void. Returns each context's DANU_STOP_* reason. Errors (nothing
    // generated): DANU_ERR_INVALID_ARG (as step, max_tokens negative),
    // DANU_ERR_STATE (a context has no logits and no queued work). With
    // exceptions, one thrown by fn stops every context and is rethrown here.
    template <class F>
    Result<std::vector<int32_t>> generate(const std::vector<Context *> &ctxs, int32_t max_tokens, F &&fn) {
        using Fn = std::remove_reference_t<F>;
        struct Box {
            Fn *fn = nullptr;
            bool stop_all = false;
#if DANU_HPP_EXCEPTIONS
            std::exception_ptr error{};
#endif
        } box;
        box.fn = &fn;
        auto tramp = [](void *user, size_t index, danu_token id, const char *text, size_t len) -> int32_t {
            Box *b = static_cast<Box *>(user);
            if (b->stop_all) return 1;
#if DANU_HPP_EXCEPTIONS
            try {
#endif
                using R = std::invoke_result_t<Fn &, size_t, danu_token, std::string_view>;
                std::string_view piece(text ? text : "", len);
                if constexpr (std::is_void_v<R>) {
                    (*b->fn)(index, id, piece);
                    return 0;
                } else if constexpr (std::is_same_v<R, Flow>) {
                    return (*b->fn)(index, id, piece) == Flow::Stop ? 1 : 0;
                } else {
                    return (*b->fn)(index, id, piece) ? 1 : 0;
                }
#if DANU_HPP_EXCEPTIONS
            } catch (...) {   // stop everything, then rethrow on this side of the C frames
                b->error = std::current_exception();
                b->stop_all = true;
                return 1;
            }
#endif
        };
        std::vector<danu_context *> hs(ctxs.size());
        for (size_t i = 0; i < ctxs.size(); i++) hs[i] = ctxs[i] ? ctxs[i]->get() : nullptr;
        std::vector<int32_t> reasons(ctxs.size(), DANU_STOP_LENGTH);
        danu_status s = danu_batch_generate(h_.get(), hs.empty() ? nullptr : hs.data(), hs.size(), max_tokens, tramp,
                                            &box, reasons.data());
#if DANU_HPP_EXCEPTIONS
        if (box.error) std::rethrow_exception(box.error);
#endif
        if (s != DANU_OK) return Status::capture(s);
        return reasons;
    }
    // Without a callback: each context's text is left to its tokens.
    Result<std::vector<int32_t>> generate(const std::vector<Context *> &ctxs, int32_t max_tokens) {
        return generate(ctxs, max_tokens, [](size_t, danu_token, std::string_view) {});
    }

    danu_batch *get() const noexcept { return h_.get(); }

private:
    static constexpr size_t kText = 4096;   // one step's text, as Context::step
    Batch(danu_batch *b, int32_t max) : h_(b), max_(max) {}
    std::shared_ptr<detail::PoolRef> pool_;   // before h_: released after the batch is freed
    std::unique_ptr<danu_batch, detail::Deleter<danu_batch, danu_batch_free>> h_;
    std::shared_ptr<detail::LogFn> log_;
    int32_t max_ = 0;
    std::vector<char> text_;                 // the items' text buffers, kText bytes each
};

// ---- tools ---------------------------------------------------------------------------

inline Status synth_write(std::string_view config, uint64_t seed, int32_t format, int32_t type,
                          const void *tokenizer_model, size_t tokenizer_len, std::string_view out_path,
                          const Options *opts = nullptr) {
    return Status::capture(danu_synth_write(std::string(config).c_str(), seed, format, type, tokenizer_model,
                                            tokenizer_len, std::string(out_path).c_str(),
                                            opts ? opts->get() : nullptr));
}

inline std::string version() { return danu_version_string(); }

}  // namespace danu
#endif  // DANU_HPP
