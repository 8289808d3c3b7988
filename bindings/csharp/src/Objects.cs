// Objects.cs - DanuOptions, DanuModel, DanuTokenizer, DanuDecoder, DanuConstraint.
using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Danu
{
    /// <summary>danu_options: settings for loading a model or creating a context.
    /// Each DANU_OPT_* key is a property (int keys long/int/bool, float keys double);
    /// a getter returns the value set through this object, else the documented default.
    /// The library copies what it needs, so one DanuOptions may be reused and disposed at once.</summary>
    public sealed class DanuOptions : IDisposable
    {
        internal readonly OptionsHandle Handle;
        readonly Dictionary<DanuOption, double> values = new Dictionary<DanuOption, double>();
        NativeProgressFn progressFn;
        internal NativeLogFn LogFn;   // models and contexts created with it keep it alive

        /// <summary>A new options bag holding every default.</summary>
        public DanuOptions() : this(Native.Touch()) { }

        [MethodImpl(MethodImplOptions.NoInlining)]   // see DanuLibrary: load DANU_LIBRARY before binding
        DanuOptions(bool loaded)
        {
            IntPtr p;
            int st = Native.danu_options_create(IntPtr.Zero, out p);
            DanuException.Check(st, "danu_options_create");
            Handle = new OptionsHandle();
            Handle.Init(p, null);
        }

        internal static OptionsHandle H(DanuOptions o) { return o == null ? OptionsHandle.Null : o.Handle; }

        /// <summary>danu_options_set_int (integer keys).</summary>
        public DanuOptions Set(DanuOption key, long value)
        {
            DanuException.Check(Native.danu_options_set_int(Handle, (int)key, value), "danu_options_set_int");
            values[key] = value;
            return this;
        }

        /// <summary>danu_options_set_float (float keys).</summary>
        public DanuOptions Set(DanuOption key, double value)
        {
            DanuException.Check(Native.danu_options_set_float(Handle, (int)key, value), "danu_options_set_float");
            values[key] = value;
            return this;
        }

        /// <summary>The value set through this object for key, else def.</summary>
        public double Get(DanuOption key, double def)
        {
            double v;
            return values.TryGetValue(key, out v) ? v : def;
        }

        internal bool TryGet(DanuOption key, out double v) { return values.TryGetValue(key, out v); }

        // load
        public bool UseMmap { get { return Get(DanuOption.UseMmap, 1) != 0; } set { Set(DanuOption.UseMmap, value ? 1L : 0L); } }
        public int SlidingWindow { get { return (int)Get(DanuOption.SlidingWindow, -1); } set { Set(DanuOption.SlidingWindow, (long)value); } }
        public bool Validate { get { return Get(DanuOption.Validate, 0) != 0; } set { Set(DanuOption.Validate, value ? 1L : 0L); } }
        /// <summary>-1 auto, 0 off, 1 on.</summary>
        public int Repack { get { return (int)Get(DanuOption.Repack, -1); } set { Set(DanuOption.Repack, (long)value); } }
        // context
        public int NCtx { get { return (int)Get(DanuOption.NCtx, 0); } set { Set(DanuOption.NCtx, (long)value); } }
        public DanuKvType KvType { get { return (DanuKvType)(int)Get(DanuOption.KvType, 0); } set { Set(DanuOption.KvType, (long)value); } }
        public long Seed { get { return (long)Get(DanuOption.Seed, 0); } set { Set(DanuOption.Seed, value); } }
        public int NBatch { get { return (int)Get(DanuOption.NBatch, 512); } set { Set(DanuOption.NBatch, (long)value); } }
        public DanuOnFull OnFull { get { return (DanuOnFull)(int)Get(DanuOption.OnFull, 0); } set { Set(DanuOption.OnFull, (long)value); } }
        public int NKeep { get { return (int)Get(DanuOption.NKeep, 0); } set { Set(DanuOption.NKeep, (long)value); } }
        /// <summary>KV cache on huge pages (DANU_OPT_KV_HUGE_PAGES, default true).</summary>
        public bool KvHugePages { get { return Get(DanuOption.KvHugePages, 1) != 0; } set { Set(DanuOption.KvHugePages, value ? 1L : 0L); } }
        // sampling
        public double Temperature { get { return Get(DanuOption.Temperature, 0.8); } set { Set(DanuOption.Temperature, value); } }
        public int TopK { get { return (int)Get(DanuOption.TopK, 40); } set { Set(DanuOption.TopK, (long)value); } }
        public double TopP { get { return Get(DanuOption.TopP, 0.95); } set { Set(DanuOption.TopP, value); } }
        public double MinP { get { return Get(DanuOption.MinP, 0.05); } set { Set(DanuOption.MinP, value); } }
        public double RepeatPenalty { get { return Get(DanuOption.RepeatPenalty, 1.0); } set { Set(DanuOption.RepeatPenalty, value); } }
        public int RepeatLastN { get { return (int)Get(DanuOption.RepeatLastN, 64); } set { Set(DanuOption.RepeatLastN, (long)value); } }
        public double FrequencyPenalty { get { return Get(DanuOption.FrequencyPenalty, 0); } set { Set(DanuOption.FrequencyPenalty, value); } }
        public double PresencePenalty { get { return Get(DanuOption.PresencePenalty, 0); } set { Set(DanuOption.PresencePenalty, value); } }
        public bool IgnoreEos { get { return Get(DanuOption.IgnoreEos, 0) != 0; } set { Set(DanuOption.IgnoreEos, value ? 1L : 0L); } }
        // threads and kernels
        public int NThreads { get { return (int)Get(DanuOption.NThreads, 0); } set { Set(DanuOption.NThreads, (long)value); } }
        public DanuIsa Isa { get { return (DanuIsa)(int)Get(DanuOption.Isa, 0); } set { Set(DanuOption.Isa, (long)value); } }
        public bool FastBf16 { get { return Get(DanuOption.FastBf16, 0) != 0; } set { Set(DanuOption.FastBf16, value ? 1L : 0L); } }

        /// <summary>Progress of a load, synth or quantize call made with these options, on
        /// the calling thread: fraction in [0,1]; return false to cancel (DanuStatus.Cancelled).
        /// Exceptions thrown by it cancel the call and are swallowed.</summary>
        public Func<float, bool> Progress
        {
            set
            {
                if (value == null) { progressFn = null; }
                else
                {
                    Func<float, bool> f = value;
                    progressFn = (user, fraction) => { try { return f(fraction) ? 0 : 1; } catch { return 1; } };
                }
                DanuException.Check(Native.danu_options_set_progress(Handle, progressFn, IntPtr.Zero), "danu_options_set_progress");
            }
        }

        /// <summary>Log messages of what is created with these options (any thread that runs
        /// library work: must be thread-safe; must not call into that object).</summary>
        public Action<DanuLogLevel, string> Log
        {
            set
            {
                if (value == null) { LogFn = null; }
                else
                {
                    Action<DanuLogLevel, string> f = value;
                    LogFn = (user, level, msg) => { try { f((DanuLogLevel)level, DanuUtf8.FromNative(msg)); } catch { } };
                }
                DanuException.Check(Native.danu_options_set_log(Handle, LogFn, IntPtr.Zero), "danu_options_set_log");
            }
        }

        public void Dispose() { Handle.Dispose(); }
    }

    /// <summary>danu_model: weights + tokenizer, immutable; share it between any number of
    /// contexts on any threads. Disposing it while contexts live is safe: the native model
    /// is freed when the last of them is.</summary>
    public sealed class DanuModel : IDisposable
    {
        internal readonly ModelHandle Handle;
        readonly NativeLogFn logFn;
        DanuTokenizer tokenizer;

        /// <summary>danu_model_load: an HF directory or a .gguf file.</summary>
        public DanuModel(string path, DanuOptions options = null) : this(Native.Touch(), path, options) { }

        [MethodImpl(MethodImplOptions.NoInlining)]
        DanuModel(bool loaded, string path, DanuOptions options)
        {
            if (path == null) throw new ArgumentNullException("path");
            IntPtr p;
            int st = Native.danu_model_load(DanuUtf8.Z(path), DanuOptions.H(options), out p);
            GC.KeepAlive(options);
            DanuException.Check(st, "danu_model_load");
            Handle = new ModelHandle();
            Handle.Init(p, null);
            if (options != null) logFn = options.LogFn;
        }

        public static DanuModel Load(string path, DanuOptions options = null) { return new DanuModel(path, options); }

        internal NativeLogFn LogFn { get { return logFn; } }

        public long GetInt(DanuInfo key)
        {
            long v;
            DanuException.Check(Native.danu_model_get_int(Handle, (int)key, out v), "danu_model_get_int");
            return v;
        }

        public double GetFloat(DanuInfo key)
        {
            double v;
            DanuException.Check(Native.danu_model_get_float(Handle, (int)key, out v), "danu_model_get_float");
            return v;
        }

        public int VocabSize { get { return (int)GetInt(DanuInfo.Vocab); } }
        public int ContextLength { get { return (int)GetInt(DanuInfo.ContextLength); } }
        public int Bos { get { return (int)GetInt(DanuInfo.Bos); } }
        public int Eos { get { return (int)GetInt(DanuInfo.Eos); } }

        /// <summary>The model's tokenizer (borrowed: valid while the model's handle lives;
        /// it keeps the native model alive), or null when the files had none.</summary>
        public DanuTokenizer Tokenizer
        {
            get
            {
                if (tokenizer == null)
                {
                    IntPtr t = Native.danu_model_tokenizer(Handle);
                    if (t == IntPtr.Zero) return null;
                    TokenizerHandle h = new TokenizerHandle(false);
                    h.Init(t, Handle);
                    tokenizer = new DanuTokenizer(h);
                }
                return tokenizer;
            }
        }

        public DanuContext CreateContext(DanuOptions options = null) { return new DanuContext(this, options); }

        /// <summary>danu_context_memory_estimate: bytes a context created with options would hold.</summary>
        public long EstimateContextMemory(DanuOptions options = null)
        {
            UIntPtr n;
            int st = Native.danu_context_memory_estimate(Handle, DanuOptions.H(options), out n);
            GC.KeepAlive(options);
            DanuException.Check(st, "danu_context_memory_estimate");
            return (long)(ulong)n;
        }

        public int TensorCount { get { return (int)GetInt(DanuInfo.TensorCount); } }

        /// <summary>danu_model_tensor: tensor i (0 &lt;= i &lt; TensorCount) of the model file.</summary>
        public DanuTensorInfo Tensor(int i)
        {
            IntPtr name;
            int type, nDims;
            long[] dims = new long[4];
            DanuException.Check(Native.danu_model_tensor(Handle, i, out name, out type, out nDims, dims), "danu_model_tensor");
            string s = DanuUtf8.FromNative(name);
            GC.KeepAlive(this);
            long[] d = new long[nDims];
            Array.Copy(dims, d, nDims);
            return new DanuTensorInfo { Name = s, Type = (DanuType)type, Dims = d };
        }

        public void Dispose()
        {
            if (tokenizer != null) tokenizer.Dispose();
            Handle.Dispose();
        }
    }

    /// <summary>danu_tokenizer: a model's (DanuModel.Tokenizer) or one loaded from a
    /// tokenizer.model (DanuTokenizer.Load). Immutable: usable from any thread.</summary>
    public sealed class DanuTokenizer : IDisposable
    {
        internal readonly TokenizerHandle Handle;

        internal DanuTokenizer(TokenizerHandle h) { Handle = h; }

        /// <summary>danu_tokenizer_load: a bare SentencePiece tokenizer.model.</summary>
        [MethodImpl(MethodImplOptions.NoInlining)]
        public static DanuTokenizer Load(string path, DanuOptions options = null)
        {
            Native.Touch();
            return LoadCore(path, options);
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        static DanuTokenizer LoadCore(string path, DanuOptions options)
        {
            if (path == null) throw new ArgumentNullException("path");
            IntPtr p;
            int st = Native.danu_tokenizer_load(DanuUtf8.Z(path), DanuOptions.H(options), out p);
            GC.KeepAlive(options);
            DanuException.Check(st, "danu_tokenizer_load");
            TokenizerHandle h = new TokenizerHandle(true);
            h.Init(p, null);
            return new DanuTokenizer(h);
        }

        public int VocabSize { get { return Native.danu_tokenizer_vocab_size(Handle); } }

        /// <summary>danu_tokenizer_encode of text's UTF-8.</summary>
        public int[] Encode(string text, DanuTokenizeFlags flags = DanuTokenizeFlags.None)
        {
            byte[] b = DanuUtf8.Bytes(text);
            int[] ids = new int[b.Length + 3];
            UIntPtr n;
            int st = Native.danu_tokenizer_encode(Handle, b, (UIntPtr)b.Length, (uint)flags, ids, (UIntPtr)ids.Length, out n);
            if (st == (int)DanuStatus.BufferTooSmall)
            {
                ids = new int[(int)n];
                st = Native.danu_tokenizer_encode(Handle, b, (UIntPtr)b.Length, (uint)flags, ids, (UIntPtr)ids.Length, out n);
            }
            DanuException.Check(st, "danu_tokenizer_encode");
            if ((int)n != ids.Length) Array.Resize(ref ids, (int)n);
            return ids;
        }

        /// <summary>Encode with BOS in front (addBos) and "&lt;s&gt;"-style specials parsed (parseSpecial).</summary>
        public int[] Tokenize(string text, bool addBos = false, bool parseSpecial = false)
        {
            return Encode(text, (addBos ? DanuTokenizeFlags.AddBos : 0) | (parseSpecial ? DanuTokenizeFlags.ParseSpecial : 0));
        }

        /// <summary>danu_tokenizer_decode: ids to text as SentencePiece decodes a sequence.</summary>
        public string Decode(int[] ids)
        {
            if (ids == null) throw new ArgumentNullException("ids");
            byte[] buf = new byte[ids.Length * 8 + 16];
            UIntPtr len;
            int st = Native.danu_tokenizer_decode(Handle, ids, (UIntPtr)ids.Length, buf, (UIntPtr)buf.Length, out len);
            if (st == (int)DanuStatus.BufferTooSmall)
            {
                buf = new byte[(int)len + 1];
                st = Native.danu_tokenizer_decode(Handle, ids, (UIntPtr)ids.Length, buf, (UIntPtr)buf.Length, out len);
            }
            DanuException.Check(st, "danu_tokenizer_decode");
            return DanuUtf8.FromBuffer(buf, (int)len);
        }

        public string Detokenize(int[] ids) { return Decode(ids); }

        /// <summary>The stored piece of id (U+2581 for spaces, "&lt;0x0A&gt;" for bytes).</summary>
        public string Piece(int id)
        {
            IntPtr p;
            UIntPtr len;
            DanuException.Check(Native.danu_tokenizer_piece(Handle, id, out p, out len), "danu_tokenizer_piece");
            string s = DanuUtf8.FromNative(p, (int)len);
            GC.KeepAlive(this);
            return s;
        }

        /// <summary>danu_chat_encode: messages in the Danube chat format.</summary>
        public int[] ChatEncode(IList<DanuChatMessage> messages, bool addReplyPrompt = true)
        {
            if (messages == null) throw new ArgumentNullException("messages");
            IntPtr[] roles = null, contents = null;
            try
            {
                roles = DanuUtf8.AllocArray(Roles(messages), "roles");
                contents = DanuUtf8.AllocArray(Contents(messages), "contents");
                int[] ids = new int[256];
                UIntPtr n;
                int st = Native.danu_chat_encode(Handle, roles, contents, (UIntPtr)messages.Count, addReplyPrompt ? 1 : 0, ids, (UIntPtr)ids.Length, out n);
                if (st == (int)DanuStatus.BufferTooSmall)
                {
                    ids = new int[(int)n];
                    st = Native.danu_chat_encode(Handle, roles, contents, (UIntPtr)messages.Count, addReplyPrompt ? 1 : 0, ids, (UIntPtr)ids.Length, out n);
                }
                DanuException.Check(st, "danu_chat_encode");
                Array.Resize(ref ids, (int)n);
                return ids;
            }
            finally
            {
                DanuUtf8.FreeArray(roles);
                DanuUtf8.FreeArray(contents);
            }
        }

        internal static string[] Roles(IList<DanuChatMessage> m)
        {
            string[] r = new string[m.Count];
            for (int i = 0; i < r.Length; i++) r[i] = m[i].Role;
            return r;
        }

        internal static string[] Contents(IList<DanuChatMessage> m)
        {
            string[] r = new string[m.Count];
            for (int i = 0; i < r.Length; i++) r[i] = m[i].Content;
            return r;
        }

        /// <summary>A streaming decoder over this tokenizer.</summary>
        public DanuDecoder CreateDecoder() { return new DanuDecoder(this); }

        /// <summary>Releases a loaded tokenizer (a model's borrowed one: drops its reference).</summary>
        public void Dispose() { Handle.Dispose(); }
    }

    /// <summary>danu_decoder: ids in, complete UTF-8 text out (an unfinished character stays pending).</summary>
    public sealed class DanuDecoder : IDisposable
    {
        internal readonly DecoderHandle Handle;
        byte[] buf = new byte[256];

        public DanuDecoder(DanuTokenizer tokenizer)
        {
            if (tokenizer == null) throw new ArgumentNullException("tokenizer");
            IntPtr p;
            DanuException.Check(Native.danu_decoder_create(tokenizer.Handle, out p), "danu_decoder_create");
            Handle = new DecoderHandle();
            Handle.Init(p, tokenizer.Handle);
        }

        public string Push(int id)
        {
            UIntPtr len;
            int st = Native.danu_decoder_push(Handle, id, buf, (UIntPtr)buf.Length, out len);
            if (st == (int)DanuStatus.BufferTooSmall)
            {
                buf = new byte[(int)len + 1];
                st = Native.danu_decoder_push(Handle, id, buf, (UIntPtr)buf.Length, out len);
            }
            DanuException.Check(st, "danu_decoder_push");
            return DanuUtf8.FromBuffer(buf, (int)len);
        }

        public string Flush()
        {
            UIntPtr len;
            int st = Native.danu_decoder_flush(Handle, buf, (UIntPtr)buf.Length, out len);
            if (st == (int)DanuStatus.BufferTooSmall)
            {
                buf = new byte[(int)len + 1];
                st = Native.danu_decoder_flush(Handle, buf, (UIntPtr)buf.Length, out len);
            }
            DanuException.Check(st, "danu_decoder_flush");
            return DanuUtf8.FromBuffer(buf, (int)len);
        }

        public void Dispose() { Handle.Dispose(); }
    }

    /// <summary>danu_constraint: a compiled GBNF grammar, JSON Schema or list of choices,
    /// immutable and shareable; attach it with DanuContext.Constraint. It may be disposed
    /// right after attaching (the context keeps its own reference).</summary>
    public sealed class DanuConstraint : IDisposable
    {
        internal readonly ConstraintHandle Handle;

        DanuConstraint(IntPtr p)
        {
            Handle = new ConstraintHandle();
            Handle.Init(p, null);
        }

        /// <summary>danu_constraint_from_grammar (root null = "root").</summary>
        public static DanuConstraint FromGrammar(DanuTokenizer tokenizer, string gbnf, string root = null)
        {
            if (tokenizer == null) throw new ArgumentNullException("tokenizer");
            byte[] g = DanuUtf8.Bytes(gbnf);
            IntPtr p;
            int st = Native.danu_constraint_from_grammar(tokenizer.Handle, g, (UIntPtr)g.Length, DanuUtf8.Z(root), out p);
            DanuException.Check(st, "danu_constraint_from_grammar");
            return new DanuConstraint(p);
        }

        /// <summary>danu_constraint_from_json_schema.</summary>
        public static DanuConstraint FromJsonSchema(DanuTokenizer tokenizer, string schema, DanuSchemaFlags flags = DanuSchemaFlags.None)
        {
            if (tokenizer == null) throw new ArgumentNullException("tokenizer");
            byte[] s = DanuUtf8.Bytes(schema);
            IntPtr p;
            int st = Native.danu_constraint_from_json_schema(tokenizer.Handle, s, (UIntPtr)s.Length, (uint)flags, out p);
            DanuException.Check(st, "danu_constraint_from_json_schema");
            return new DanuConstraint(p);
        }

        /// <summary>danu_constraint_from_choices: the output is exactly one of choices.</summary>
        public static DanuConstraint FromChoices(DanuTokenizer tokenizer, params string[] choices)
        {
            if (tokenizer == null) throw new ArgumentNullException("tokenizer");
            if (choices == null) throw new ArgumentNullException("choices");
            IntPtr[] a = DanuUtf8.AllocArray(choices, "choices");
            try
            {
                IntPtr p;
                int st = Native.danu_constraint_from_choices(tokenizer.Handle, a, (UIntPtr)a.Length, out p);
                DanuException.Check(st, "danu_constraint_from_choices");
                return new DanuConstraint(p);
            }
            finally { DanuUtf8.FreeArray(a); }
        }

        /// <summary>danu_json_schema_to_grammar: the GBNF a schema compiles to.</summary>
        [MethodImpl(MethodImplOptions.NoInlining)]
        public static string JsonSchemaToGrammar(string schema, DanuSchemaFlags flags = DanuSchemaFlags.None)
        {
            Native.Touch();
            return SchemaToGrammar(schema, flags);
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        static string SchemaToGrammar(string schema, DanuSchemaFlags flags)
        {
            byte[] s = DanuUtf8.Bytes(schema);
            byte[] buf = new byte[1024];
            UIntPtr len;
            int st = Native.danu_json_schema_to_grammar(s, (UIntPtr)s.Length, (uint)flags, buf, (UIntPtr)buf.Length, out len);
            if (st == (int)DanuStatus.BufferTooSmall)
            {
                buf = new byte[(int)len + 1];
                st = Native.danu_json_schema_to_grammar(s, (UIntPtr)s.Length, (uint)flags, buf, (UIntPtr)buf.Length, out len);
            }
            DanuException.Check(st, "danu_json_schema_to_grammar");
            return DanuUtf8.FromBuffer(buf, (int)len);
        }

        public void Dispose() { Handle.Dispose(); }
    }
}
