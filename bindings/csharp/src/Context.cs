// Context.cs - DanuContext: KV cache, sampler, generation (blocking, callback,
// IEnumerable, step by step, in time-budgeted slices), abort, state, chat,
// constraints.
using System;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;

namespace Danu
{
    /// <summary>IL2CPP (Unity) compiles a callback handed to native code only when it is a
    /// static method carrying an attribute of this name; the binding's one callback is.</summary>
    [AttributeUsage(AttributeTargets.Method)]
    internal sealed class MonoPInvokeCallbackAttribute : Attribute
    {
        public MonoPInvokeCallbackAttribute(Type t) { }
    }

    /// <summary>danu_context: one conversation (KV cache, token history, sampler). One
    /// thread at a time; Abort() is the one call allowed from another thread.</summary>
    public sealed class DanuContext : IDisposable
    {
        internal readonly ContextHandle Handle;
        readonly DanuModel model;
        readonly NativeLogFn logFn;
        readonly Dictionary<DanuOption, double> live = new Dictionary<DanuOption, double>();
        readonly int vocab;
        byte[] text = new byte[4096];
        DanuConstraint constraint;

        public DanuContext(DanuModel model, DanuOptions options = null)
        {
            if (model == null) throw new ArgumentNullException("model");
            IntPtr p;
            int st = Native.danu_context_create(model.Handle, DanuOptions.H(options), out p);
            GC.KeepAlive(options);
            DanuException.Check(st, "danu_context_create");
            Handle = new ContextHandle();
            Handle.Init(p, model.Handle);
            this.model = model;
            vocab = model.VocabSize;
            logFn = options != null && options.LogFn != null ? options.LogFn : model.LogFn;
            if (options != null)
                foreach (DanuOption k in Enum.GetValues(typeof(DanuOption)))
                {
                    double v;
                    if (options.TryGet(k, out v)) live[k] = v;
                }
        }

        DanuContext(DanuModel model, IntPtr p, NativeLogFn logFn, Dictionary<DanuOption, double> settings)
        {
            Handle = new ContextHandle();
            Handle.Init(p, model.Handle);
            this.model = model;
            vocab = model.VocabSize;
            this.logFn = logFn;
            foreach (KeyValuePair<DanuOption, double> kv in settings) live[kv.Key] = kv.Value;
        }

        public DanuModel Model { get { return model; } }

        // ---- settings ---------------------------------------------------------------------

        /// <summary>danu_context_set_int (live keys: Seed, OnFull, NKeep, TopK, RepeatLastN, IgnoreEos).</summary>
        public void Set(DanuOption key, long value)
        {
            DanuException.Check(Native.danu_context_set_int(Handle, (int)key, value), "danu_context_set_int");
            live[key] = value;
        }

        /// <summary>danu_context_set_float (live keys: Temperature, TopP, MinP, RepeatPenalty,
        /// FrequencyPenalty, PresencePenalty).</summary>
        public void Set(DanuOption key, double value)
        {
            DanuException.Check(Native.danu_context_set_float(Handle, (int)key, value), "danu_context_set_float");
            live[key] = value;
        }

        double Get(DanuOption key, double def)
        {
            double v;
            return live.TryGetValue(key, out v) ? v : def;
        }

        // Getters give the value set at creation or since through this object, else the default.
        public double Temperature { get { return Get(DanuOption.Temperature, 0.8); } set { Set(DanuOption.Temperature, value); } }
        public int TopK { get { return (int)Get(DanuOption.TopK, 40); } set { Set(DanuOption.TopK, (long)value); } }
        public double TopP { get { return Get(DanuOption.TopP, 0.95); } set { Set(DanuOption.TopP, value); } }
        public double MinP { get { return Get(DanuOption.MinP, 0.05); } set { Set(DanuOption.MinP, value); } }
        public double RepeatPenalty { get { return Get(DanuOption.RepeatPenalty, 1.0); } set { Set(DanuOption.RepeatPenalty, value); } }
        public int RepeatLastN { get { return (int)Get(DanuOption.RepeatLastN, 64); } set { Set(DanuOption.RepeatLastN, (long)value); } }
        public double FrequencyPenalty { get { return Get(DanuOption.FrequencyPenalty, 0); } set { Set(DanuOption.FrequencyPenalty, value); } }
        public double PresencePenalty { get { return Get(DanuOption.PresencePenalty, 0); } set { Set(DanuOption.PresencePenalty, value); } }
        public bool IgnoreEos { get { return Get(DanuOption.IgnoreEos, 0) != 0; } set { Set(DanuOption.IgnoreEos, value ? 1L : 0L); } }
        /// <summary>Setting it reseeds the sampler.</summary>
        public long Seed { get { return (long)Get(DanuOption.Seed, 0); } set { Set(DanuOption.Seed, value); } }
        public DanuOnFull OnFull { get { return (DanuOnFull)(int)Get(DanuOption.OnFull, 0); } set { Set(DanuOption.OnFull, (long)value); } }
        public int NKeep { get { return (int)Get(DanuOption.NKeep, 0); } set { Set(DanuOption.NKeep, (long)value); } }

        public void SetLogitBias(int id, float bias)
        {
            DanuException.Check(Native.danu_context_set_logit_bias(Handle, id, bias), "danu_context_set_logit_bias");
        }

        public void AddStopString(string s)
        {
            if (s == null) throw new ArgumentNullException("s");
            DanuException.Check(Native.danu_context_add_stop_string(Handle, DanuUtf8.Z(s)), "danu_context_add_stop_string");
        }

        public void ClearStopStrings()
        {
            DanuException.Check(Native.danu_context_clear_stop_strings(Handle), "danu_context_clear_stop_strings");
        }

        public long MemorySize { get { return (long)(ulong)Native.danu_context_memory_size(Handle); } }

        // ---- cache ------------------------------------------------------------------------

        /// <summary>danu_context_eval: append tokens and compute them. Throws DanuException
        /// (Aborted, ContextFull, BadToken, ...).</summary>
        public void Eval(int[] tokens)
        {
            if (tokens == null) throw new ArgumentNullException("tokens");
            DanuException.Check(Native.danu_context_eval(Handle, tokens, (UIntPtr)tokens.Length, IntPtr.Zero), "danu_context_eval");
        }

        /// <summary>danu_context_prompt: make the cache hold exactly tokens, reusing the cached
        /// prefix. Returns how many cached tokens were kept.</summary>
        public int Prompt(int[] tokens)
        {
            if (tokens == null) throw new ArgumentNullException("tokens");
            UIntPtr reused;
            DanuException.Check(Native.danu_context_prompt(Handle, tokens, (UIntPtr)tokens.Length, out reused), "danu_context_prompt");
            return (int)reused;
        }

        /// <summary>Tokenize text with the model's tokenizer (BOS in front) and Prompt it.</summary>
        public int Prompt(string text)
        {
            return Prompt(model.Tokenizer.Tokenize(text, addBos: true));
        }

        public int NTokens { get { return (int)Native.danu_context_n_tokens(Handle); } }

        /// <summary>A copy of the cached ids, oldest first.</summary>
        public int[] Tokens
        {
            get
            {
                int n = NTokens;
                int[] a = new int[n];
                if (n > 0) Marshal.Copy(Native.danu_context_tokens(Handle), a, 0, n);
                return a;
            }
        }

        /// <summary>A copy of the last position's logits, or null when there are none.</summary>
        public float[] Logits
        {
            get
            {
                IntPtr p = Native.danu_context_logits(Handle);
                if (p == IntPtr.Zero) return null;
                float[] a = new float[vocab];
                Marshal.Copy(p, a, 0, a.Length);
                return a;
            }
        }

        public void Clear() { DanuException.Check(Native.danu_context_clear(Handle), "danu_context_clear"); }

        public void Rewind(int n)
        {
            if (n < 0) throw new ArgumentOutOfRangeException("n");
            DanuException.Check(Native.danu_context_rewind(Handle, (UIntPtr)n), "danu_context_rewind");
        }

        /// <summary>danu_context_abort: ask running work to stop. Any thread, also while another
        /// thread runs work on this context; a no-op once the context is disposed.</summary>
        public void Abort()
        {
            try { Native.danu_context_abort(Handle); }
            catch (ObjectDisposedException) { }
        }

        public int Sample()
        {
            int id;
            DanuException.Check(Native.danu_context_sample(Handle, out id), "danu_context_sample");
            return id;
        }

        // ---- chat -------------------------------------------------------------------------

        /// <summary>danu_context_chat_append: append messages (Danube chat format) and evaluate.</summary>
        public void ChatAppend(IList<DanuChatMessage> messages, bool addReplyPrompt = true)
        {
            Chat(messages, addReplyPrompt, false);
        }

        public void ChatAppend(params DanuChatMessage[] messages) { Chat(messages, true, false); }

        /// <summary>danu_context_chat_append_begin: encode now, queue the evaluation for Work().</summary>
        public void ChatAppendBegin(IList<DanuChatMessage> messages, bool addReplyPrompt = true)
        {
            Chat(messages, addReplyPrompt, true);
        }

        void Chat(IList<DanuChatMessage> messages, bool addReplyPrompt, bool begin)
        {
            if (messages == null) throw new ArgumentNullException("messages");
            IntPtr[] roles = null, contents = null;
            try
            {
                roles = DanuUtf8.AllocArray(DanuTokenizer.Roles(messages), "roles");
                contents = DanuUtf8.AllocArray(DanuTokenizer.Contents(messages), "contents");
                int st = begin
                    ? Native.danu_context_chat_append_begin(Handle, roles, contents, (UIntPtr)messages.Count, addReplyPrompt ? 1 : 0)
                    : Native.danu_context_chat_append(Handle, roles, contents, (UIntPtr)messages.Count, addReplyPrompt ? 1 : 0);
                DanuException.Check(st, begin ? "danu_context_chat_append_begin" : "danu_context_chat_append");
            }
            finally
            {
                DanuUtf8.FreeArray(roles);
                DanuUtf8.FreeArray(contents);
            }
        }

        // ---- work in slices ---------------------------------------------------------------

        public void EvalBegin(int[] tokens)
        {
            if (tokens == null) throw new ArgumentNullException("tokens");
            DanuException.Check(Native.danu_context_eval_begin(Handle, tokens, (UIntPtr)tokens.Length), "danu_context_eval_begin");
        }

        public int PromptBegin(int[] tokens)
        {
            if (tokens == null) throw new ArgumentNullException("tokens");
            UIntPtr reused;
            DanuException.Check(Native.danu_context_prompt_begin(Handle, tokens, (UIntPtr)tokens.Length, out reused), "danu_context_prompt_begin");
            return (int)reused;
        }

        /// <summary>danu_context_work: advance queued work for about budgetMicroseconds.
        /// Returns true when it is finished (or nothing was pending), false while work remains.</summary>
        public bool Work(long budgetMicroseconds)
        {
            int st = Native.danu_context_work(Handle, budgetMicroseconds);
            if (st == (int)DanuStatus.InProgress) return false;
            DanuException.Check(st, "danu_context_work");
            return true;
        }

        /// <summary>Tokens of queued work not evaluated yet.</summary>
        public int Pending { get { return (int)Native.danu_context_pending(Handle); } }

        // ---- generation -------------------------------------------------------------------

        /// <summary>danu_context_step: sample a token, evaluate it, return the text that became
        /// final. Aborted and full contexts end generation (Reason Aborted / Full) rather than
        /// throw; other failures throw DanuException.</summary>
        public DanuStep Step() { return StepCore(false, 0); }

        /// <summary>danu_context_step_sliced: the same step cut into slices of about
        /// budgetMicroseconds; InProgress while the token's evaluation is not finished.</summary>
        public DanuStep StepSliced(long budgetMicroseconds) { return StepCore(true, budgetMicroseconds); }

        public DanuStep StepSliced(TimeSpan budget) { return StepCore(true, (long)(budget.TotalMilliseconds * 1000)); }

        DanuStep StepCore(bool sliced, long budget)
        {
            for (;;)
            {
                int id, reason;
                UIntPtr len;
                int st = sliced
                    ? Native.danu_context_step_sliced(Handle, budget, out id, text, (UIntPtr)text.Length, out len, out reason)
                    : Native.danu_context_step(Handle, out id, text, (UIntPtr)text.Length, out len, out reason);
                DanuStep r = new DanuStep { Token = id, Text = "", Reason = (DanuStopReason)reason };
                switch ((DanuStatus)st)
                {
                case DanuStatus.Ok:
                    r.Text = DanuUtf8.FromBuffer(text, (int)len);
                    return r;
                case DanuStatus.InProgress:
                    r.InProgress = true;
                    r.Reason = DanuStopReason.None;
                    return r;
                case DanuStatus.Aborted:
                    r.Reason = DanuStopReason.Aborted;
                    return r;
                case DanuStatus.ContextFull:
                    r.Reason = DanuStopReason.Full;
                    return r;
                case DanuStatus.BufferTooSmall:
                    // the token went through; its text is held for the next step (or, when this
                    // step ended generation, for step_finish). Grow the buffer for it.
                    text = new byte[Math.Max(text.Length * 2, (int)len + 1)];
                    if (id < 0) continue;            // refused to start: nothing happened, retry
                    if (r.Reason != DanuStopReason.None) r.Text = FinishSteps();
                    return r;
                default:
                    DanuException.Check(st, sliced ? "danu_context_step_sliced" : "danu_context_step");
                    return r;
                }
            }
        }

        /// <summary>danu_context_step_finish: end a step-driven generation, returning the text
        /// held back (an unfinished character, a possible stop string's start).</summary>
        public string FinishSteps()
        {
            UIntPtr len;
            int st = Native.danu_context_step_finish(Handle, text, (UIntPtr)text.Length, out len);
            if (st == (int)DanuStatus.BufferTooSmall)
            {
                text = new byte[(int)len + 1];
                st = Native.danu_context_step_finish(Handle, text, (UIntPtr)text.Length, out len);
            }
            DanuException.Check(st, "danu_context_step_finish");
            return DanuUtf8.FromBuffer(text, (int)len);
        }

        /// <summary>Up to maxTokens tokens as a stream of text pieces (danu_context_step per
        /// MoveNext); concatenated, they equal Generate's text. Reason is the last step's.
        /// Stopping the enumeration early ends the generation (held-back text is dropped).</summary>
        public IEnumerable<string> Stream(int maxTokens)
        {
            if (maxTokens < 0) throw new ArgumentOutOfRangeException("maxTokens");
            return StreamCore(maxTokens);
        }

        /// <summary>Why the last Stream / Generate / GenerateText ended.</summary>
        public DanuStopReason LastStopReason { get; private set; }

        IEnumerable<string> StreamCore(int maxTokens)
        {
            bool ended = false;
            LastStopReason = DanuStopReason.None;
            try
            {
                for (int i = 0; i < maxTokens; i++)
                {
                    DanuStep s = Step();
                    if (s.Done)
                    {
                        ended = true;
                        LastStopReason = s.Reason;
                        if (s.Text.Length > 0) yield return s.Text;
                        yield break;
                    }
                    if (s.Text.Length > 0) yield return s.Text;
                }
                ended = true;
                LastStopReason = DanuStopReason.Length;
                string rest = FinishSteps();
                if (rest.Length > 0) yield return rest;
            }
            finally
            {
                if (!ended)
                {
                    try { FinishSteps(); } catch (DanuException) { } catch (ObjectDisposedException) { }
                }
            }
        }

        /// <summary>Called with each token's id and the text that became final (id -1: the
        /// flushed text at the end); return true to stop (DanuStopReason.Callback).</summary>
        public delegate bool TokenHandler(int id, string text);

        sealed class GenerateCall
        {
            internal TokenHandler Handler;
            internal Exception Error;
        }

        static readonly NativeTokenFn Trampoline = OnToken;

        [MonoPInvokeCallback(typeof(NativeTokenFn))]
        static int OnToken(IntPtr user, int id, IntPtr text, UIntPtr len)
        {
            GenerateCall call = (GenerateCall)GCHandle.FromIntPtr(user).Target;
            if (call.Error != null) return 1;
            try { return call.Handler(id, DanuUtf8.FromNative(text, (int)len)) ? 1 : 0; }
            catch (Exception e) { call.Error = e; return 1; }   // never let it unwind through C
        }

        /// <summary>danu_context_generate: up to maxTokens tokens, onToken called for each (on
        /// this thread). Returns why it stopped (Aborted and Full too, rather than throwing). An
        /// exception thrown by onToken stops generation and is rethrown here.</summary>
        public DanuStopReason Generate(int maxTokens, TokenHandler onToken)
        {
            GenerateCall call = new GenerateCall { Handler = onToken };
            GCHandle gch = GCHandle.Alloc(call);
            NativeTokenFn fn = onToken != null ? Trampoline : null;
            int reason, st;
            try
            {
                st = Native.danu_context_generate(Handle, maxTokens, fn, GCHandle.ToIntPtr(gch), out reason);
                GC.KeepAlive(fn);
            }
            finally { gch.Free(); }
            if (call.Error != null) ExceptionDispatchInfo.Capture(call.Error).Throw();
            LastStopReason = (DanuStopReason)reason;
            if (st == (int)DanuStatus.Aborted || st == (int)DanuStatus.ContextFull) return LastStopReason;
            DanuException.Check(st, "danu_context_generate");
            return LastStopReason;
        }

        /// <summary>Generate and return the whole text.</summary>
        public string GenerateText(int maxTokens)
        {
            System.Text.StringBuilder sb = new System.Text.StringBuilder();
            Generate(maxTokens, (id, t) => { sb.Append(t); return false; });
            return sb.ToString();
        }

        // ---- constraints ------------------------------------------------------------------

        /// <summary>The attached constraint (danu_context_set_constraint); null removes it.</summary>
        public DanuConstraint Constraint
        {
            get { return constraint; }
            set
            {
                int st = Native.danu_context_set_constraint(Handle, value == null ? ConstraintHandle.Null : value.Handle);
                DanuException.Check(st, "danu_context_set_constraint");
                constraint = value;
            }
        }

        public DanuConstraintState ConstraintState
        {
            get
            {
                int s;
                DanuException.Check(Native.danu_context_constraint_state(Handle, out s), "danu_context_constraint_state");
                return (DanuConstraintState)s;
            }
        }

        // ---- copies and state -------------------------------------------------------------

        /// <summary>danu_context_fork: a new context with this one's options holding a copy of it.</summary>
        public DanuContext Fork()
        {
            IntPtr p;
            DanuException.Check(Native.danu_context_fork(Handle, out p), "danu_context_fork");
            return new DanuContext(model, p, logFn, live);
        }

        /// <summary>danu_context_copy: make this context a copy of src.</summary>
        public void CopyFrom(DanuContext src)
        {
            if (src == null) throw new ArgumentNullException("src");
            DanuException.Check(Native.danu_context_copy(Handle, src.Handle), "danu_context_copy");
        }

        /// <summary>danu_context_state_save into a new array.</summary>
        public byte[] SaveState()
        {
            byte[] buf = new byte[(long)(ulong)Native.danu_context_state_size(Handle)];
            UIntPtr written;
            int st = Native.danu_context_state_save(Handle, buf, (UIntPtr)buf.Length, out written);
            if (st == (int)DanuStatus.BufferTooSmall)
            {
                buf = new byte[(long)(ulong)written];
                st = Native.danu_context_state_save(Handle, buf, (UIntPtr)buf.Length, out written);
            }
            DanuException.Check(st, "danu_context_state_save");
            if ((long)(ulong)written != buf.Length) Array.Resize(ref buf, (int)(ulong)written);
            return buf;
        }

        public void LoadState(byte[] state)
        {
            if (state == null) throw new ArgumentNullException("state");
            DanuException.Check(Native.danu_context_state_load(Handle, state, (UIntPtr)state.Length), "danu_context_state_load");
        }

        /// <summary>danu_context_state_save_file (the path is passed as UTF-8).</summary>
        public void SaveState(string path)
        {
            if (path == null) throw new ArgumentNullException("path");
            DanuException.Check(Native.danu_context_state_save_file(Handle, DanuUtf8.Z(path)), "danu_context_state_save_file");
        }

        public void LoadState(string path)
        {
            if (path == null) throw new ArgumentNullException("path");
            DanuException.Check(Native.danu_context_state_load_file(Handle, DanuUtf8.Z(path)), "danu_context_state_load_file");
        }

        /// <summary>Frees the context (safe to call twice; after a concurrent Abort returns).</summary>
        public void Dispose() { Handle.Dispose(); }
    }
}
