// Types.cs - enums, the exception type and UTF-8 helpers of the binding.
// Values mirror include/danu.h; ABI.md rule 3: they only gain values, so
// code must accept unknown values it receives (a newer library's).
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace Danu
{
    /// <summary>danu_status.</summary>
    public enum DanuStatus
    {
        Ok = 0, InvalidArg = 1, NoMem = 2, IO = 3, Format = 4, Unsupported = 5, Cancelled = 6,
        Aborted = 7, ContextFull = 8, BadToken = 9, BadUtf8 = 10, State = 11, BufferTooSmall = 12,
        Internal = 13, InProgress = 14
    }

    /// <summary>DANU_STOP_*; None (-1) while generation goes on.</summary>
    public enum DanuStopReason
    {
        None = -1, Length = 0, Eos = 1, String = 2, Callback = 3, Aborted = 4, Full = 5, Grammar = 6
    }

    /// <summary>DANU_OPT_* keys (each has one type: see DanuOptions' properties).</summary>
    public enum DanuOption
    {
        UseMmap = 100, SlidingWindow = 101, Validate = 102, Repack = 103,
        NCtx = 200, KvType = 201, Seed = 202, NBatch = 203, OnFull = 204, NKeep = 205, KvHugePages = 206,
        Temperature = 300, TopK = 301, TopP = 302, MinP = 303, RepeatPenalty = 304, RepeatLastN = 305,
        FrequencyPenalty = 306, PresencePenalty = 307, IgnoreEos = 308,
        NThreads = 400, Isa = 401, FastBf16 = 402
    }

    /// <summary>DANU_INFO_* model facts (below 100 integers, 100 and up floats).</summary>
    public enum DanuInfo
    {
        Vocab = 1, Hidden = 2, Layers = 3, Heads = 4, KvHeads = 5, HeadDim = 6, Ffn = 7, ContextLength = 8,
        SlidingWindow = 9, Bos = 10, Eos = 11, Unk = 12, Format = 13, TensorCount = 14, WeightBytes = 15,
        TiedEmbeddings = 16, Isa = 17, FileType = 18, RepackedMatrices = 19, RepackedBytes = 20,
        RopeTheta = 100, RmsEps = 101
    }

    public enum DanuFormat { HF = 1, Gguf = 2 }

    /// <summary>DANU_TYPE_* weight types (GGUF's ggml_type numbers).</summary>
    public enum DanuType
    {
        F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30
    }

    [Flags]
    public enum DanuTokenizeFlags { None = 0, AddBos = 1, AddEos = 2, ParseSpecial = 4 }

    public enum DanuKvType { F16 = 0, F32 = 1, Q8_0 = 2 }
    public enum DanuOnFull { Error = 0, Shift = 1 }
    public enum DanuIsa { Auto = 0, Scalar = 1, Avx2 = 2, Avx512 = 3, Neon = 4 }
    public enum DanuLogLevel { Error = 0, Warn = 1, Info = 2, Debug = 3 }

    /// <summary>danu_context_constraint_state values.</summary>
    public enum DanuConstraintState { None = 0, Open = 1, Complete = 2, Finished = 3 }

    [Flags]
    public enum DanuSchemaFlags { None = 0, Spaces = 1 }

    /// <summary>A failed danu call: the status, the library's description of it
    /// (danu_strerror) and the detail of the failure (danu_last_error).</summary>
    public class DanuException : Exception
    {
        public DanuStatus Status { get; private set; }
        /// <summary>danu_last_error() right after the failing call.</summary>
        public string Detail { get; private set; }
        /// <summary>The C function that failed.</summary>
        public string Function { get; private set; }

        public DanuException(DanuStatus status, string function, string detail)
            : base(Format(status, function, detail))
        {
            Status = status;
            Function = function;
            Detail = detail;
        }

        static string Format(DanuStatus status, string function, string detail)
        {
            string what = DanuLibrary.StrError(status);
            string s = function + ": " + what + " (" + status + ")";
            return string.IsNullOrEmpty(detail) ? s : s + ": " + detail;
        }

        /// <summary>Throws for any status but OK (reads danu_last_error at once,
        /// before another danu call on this thread can replace it).</summary>
        internal static void Check(int status, string function)
        {
            if (status == 0) return;
            string detail = DanuUtf8.FromNative(Native.danu_last_error());
            throw new DanuException((DanuStatus)status, function, detail);
        }
    }

    /// <summary>Text across the boundary is UTF-8 both ways.</summary>
    internal static class DanuUtf8
    {
        // no BOM; invalid sequences (never produced by libdanu) decode as U+FFFD
        static readonly UTF8Encoding Utf8 = new UTF8Encoding(false, false);

        /// <summary>NUL-terminated UTF-8 bytes of s (null stays null).</summary>
        internal static byte[] Z(string s)
        {
            if (s == null) return null;
            int n = Utf8.GetByteCount(s);
            byte[] b = new byte[n + 1];
            Utf8.GetBytes(s, 0, s.Length, b, 0);
            return b;
        }

        /// <summary>UTF-8 bytes of s without a NUL.</summary>
        internal static byte[] Bytes(string s) { return Utf8.GetBytes(s ?? ""); }

        internal static string FromBuffer(byte[] buf, int len) { return Utf8.GetString(buf, 0, len); }

        /// <summary>A NUL-terminated UTF-8 string owned by the library.</summary>
        internal static string FromNative(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            return FromNative(p, n);
        }

        /// <summary>len bytes of UTF-8 at p.</summary>
        internal static string FromNative(IntPtr p, int len)
        {
            if (len == 0) return "";
            byte[] b = new byte[len];
            Marshal.Copy(p, b, 0, len);
            return Utf8.GetString(b);
        }

        /// <summary>A native array of NUL-terminated UTF-8 strings (const char *const *);
        /// free it with FreeArray.</summary>
        internal static IntPtr[] AllocArray(IList<string> items, string what)
        {
            IntPtr[] a = new IntPtr[items.Count];
            try
            {
                for (int i = 0; i < a.Length; i++)
                {
                    if (items[i] == null) throw new ArgumentNullException(what + "[" + i + "]");
                    byte[] z = Z(items[i]);
                    a[i] = Marshal.AllocHGlobal(z.Length);
                    Marshal.Copy(z, 0, a[i], z.Length);
                }
            }
            catch
            {
                FreeArray(a);
                throw;
            }
            return a;
        }

        internal static void FreeArray(IntPtr[] a)
        {
            if (a == null) return;
            for (int i = 0; i < a.Length; i++)
                if (a[i] != IntPtr.Zero) { Marshal.FreeHGlobal(a[i]); a[i] = IntPtr.Zero; }
        }
    }

    /// <summary>One chat message: role "system", "user" or "assistant", and its text.</summary>
    public struct DanuChatMessage
    {
        public string Role;
        public string Content;
        public DanuChatMessage(string role, string content) { Role = role; Content = content; }
        public static DanuChatMessage System(string text) { return new DanuChatMessage("system", text); }
        public static DanuChatMessage User(string text) { return new DanuChatMessage("user", text); }
        public static DanuChatMessage Assistant(string text) { return new DanuChatMessage("assistant", text); }
    }

    /// <summary>One tensor of a model file (DanuModel.Tensor).</summary>
    public struct DanuTensorInfo
    {
        /// <summary>The name as stored ("token_embd.weight", "model.layers.0.mlp.up_proj.weight").</summary>
        public string Name;
        public DanuType Type;
        /// <summary>The dimensions, outermost first (PyTorch order).</summary>
        public long[] Dims;
    }

    /// <summary>Result of DanuContext.Step / StepSliced.</summary>
    public struct DanuStep
    {
        /// <summary>The sampled id (EOS included), -1 when none was sampled.</summary>
        public int Token;
        /// <summary>Text that became final with this step (may be empty).</summary>
        public string Text;
        /// <summary>None while generation goes on, else why it ended.</summary>
        public DanuStopReason Reason;
        /// <summary>StepSliced only: the token's evaluation is not finished; call again.</summary>
        public bool InProgress;
        /// <summary>Generation ended with this step (Reason is not None).</summary>
        public bool Done { get { return Reason != DanuStopReason.None; } }
    }
}
