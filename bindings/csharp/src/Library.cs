// Library.cs - library-wide calls (versions, errors, tools) and how the
// native library is found.
//
// [DllImport("danu")] resolves, on Mono, through Danu.dll.config (beside
// Danu.dll): "danu" -> libdanu.so.0 (Linux), libdanu.0.dylib (macOS); on
// Windows "danu" is danu.dll. The dynamic loader then searches as usual
// (the assembly's directory first on Mono, then LD_LIBRARY_PATH, ldconfig).
// Override: the environment variable DANU_LIBRARY (a full path), or a call
// to DanuLibrary.Load(path) before any other danu call, loads that file
// first; the later lookup by name then finds it already loaded (glibc
// matches the SONAME libdanu.so.0, Windows the module name danu.dll).
using System;
using System.IO;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Danu
{
    public static class DanuLibrary
    {
        static readonly object gate = new object();
        static string loadedFrom;

        /// <summary>The path DANU_LIBRARY or Load() preloaded, or null.</summary>
        public static string PreloadedPath { get { lock (gate) return loadedFrom; } }

        /// <summary>Load libdanu from an explicit file before anything resolves
        /// "danu". Call it before any other danu call (it takes the place of
        /// DANU_LIBRARY); later calls with another path throw (a process holds
        /// one libdanu).</summary>
        public static void Load(string path)
        {
            if (path == null) throw new ArgumentNullException("path");
            lock (gate)
            {
                LoadCore(path);
                envDone = true;
            }
        }

        static void LoadCore(string path)
        {
            if (loadedFrom != null)
            {
                if (loadedFrom == path) return;
                throw new InvalidOperationException("libdanu already loaded from " + loadedFrom);
            }
            string full = Path.GetFullPath(path);
            if (!File.Exists(full)) throw new DllNotFoundException("libdanu: no file " + full);
            if (IsWindows)
            {
                if (Win.LoadLibraryW(full) == IntPtr.Zero)
                    throw new DllNotFoundException("LoadLibrary(" + full + ") failed: error " + Marshal.GetLastWin32Error());
            }
            else
            {
                IntPtr h;
                try { h = Dl.Linux.dlopen(full, Dl.RTLD_NOW | Dl.RTLD_GLOBAL); }
                catch (DllNotFoundException) { h = Dl.Other.dlopen(full, Dl.RTLD_NOW | Dl.RTLD_GLOBAL); }
                if (h == IntPtr.Zero) throw new DllNotFoundException("dlopen(" + full + ") failed");
            }
            loadedFrom = path;
        }

        static volatile bool envDone;
        static Exception envError;

        /// <summary>Loads DANU_LIBRARY once, when set; a failure is thrown again on every call.</summary>
        internal static void EnsureLoaded()
        {
            if (envDone) { if (envError != null) throw new DllNotFoundException(envError.Message, envError); return; }
            lock (gate)
            {
                if (!envDone)
                {
                    string p = Environment.GetEnvironmentVariable("DANU_LIBRARY");
                    try { if (!string.IsNullOrEmpty(p) && loadedFrom == null) LoadCore(p); }
                    catch (Exception e) { envError = e; }
                    envDone = true;
                }
            }
            if (envError != null) throw new DllNotFoundException(envError.Message, envError);
        }

        static bool IsWindows
        {
            get
            {
                PlatformID p = Environment.OSVersion.Platform;
                return p == PlatformID.Win32NT || p == PlatformID.Win32Windows;
            }
        }

        static class Win
        {
            [DllImport("kernel32", CharSet = CharSet.Unicode, SetLastError = true)]
            internal static extern IntPtr LoadLibraryW(string path);
        }

        static class Dl
        {
            internal const int RTLD_NOW = 2, RTLD_GLOBAL = 0x100;
            internal static class Linux
            {
                [DllImport("libdl.so.2", CharSet = CharSet.Ansi, BestFitMapping = false)]
                internal static extern IntPtr dlopen(string path, int mode);
            }
            internal static class Other
            {
                [DllImport("libdl", CharSet = CharSet.Ansi, BestFitMapping = false)]
                internal static extern IntPtr dlopen(string path, int mode);
            }
        }

        // Mono binds a P/Invoke when it compiles the method that calls it, so the
        // public members below load DANU_LIBRARY first and then call, not inlined,
        // the method that holds the P/Invoke (class Calls).
        const MethodImplOptions NoInline = MethodImplOptions.NoInlining;

        /// <summary>danu_version_number(): MAJOR*10000 + MINOR*100 + PATCH of the loaded library.</summary>
        public static int VersionNumber { [MethodImpl(NoInline)] get { EnsureLoaded(); return Calls.VersionNumber(); } }
        /// <summary>danu_version_string(): "MAJOR.MINOR.PATCH".</summary>
        public static string Version { [MethodImpl(NoInline)] get { EnsureLoaded(); return Calls.Version(); } }
        /// <summary>The version this binding was written against (0.2.0).</summary>
        public const int BindingVersionNumber = 200;

        /// <summary>danu_strerror: a short description of a status.</summary>
        [MethodImpl(NoInline)]
        public static string StrError(DanuStatus status) { EnsureLoaded(); return Calls.StrError(status); }
        /// <summary>danu_last_error() of this thread ("" when nothing failed yet).</summary>
        public static string LastError { [MethodImpl(NoInline)] get { EnsureLoaded(); return Calls.LastError(); } }
        /// <summary>danu_type_name ("bf16", "q4_0", ...).</summary>
        [MethodImpl(NoInline)]
        public static string TypeName(DanuType type) { EnsureLoaded(); return Calls.TypeName(type); }

        /// <summary>danu_param_bounds; false for a key this library does not know.</summary>
        [MethodImpl(NoInline)]
        public static bool ParamBounds(DanuOption key, out double min, out double max)
        {
            EnsureLoaded();
            return Calls.ParamBounds(key, out min, out max);
        }

        /// <summary>danu_param_from_name ("temperature" -> Temperature); -1 cast when unknown.</summary>
        [MethodImpl(NoInline)]
        public static DanuOption ParamFromName(string name) { EnsureLoaded(); return Calls.ParamFromName(name); }

        /// <summary>danu_synth_write: a synthetic-weight model ("tiny-a", ...).</summary>
        [MethodImpl(NoInline)]
        public static void SynthWrite(string config, ulong seed, DanuFormat format, DanuType type,
                                      byte[] tokenizerModel, string outPath, DanuOptions options = null)
        {
            if (tokenizerModel == null) throw new ArgumentNullException("tokenizerModel");
            EnsureLoaded();
            Calls.SynthWrite(config, seed, format, type, tokenizerModel, outPath, options);
        }

        /// <summary>danu_quantize: convert input (HF directory or GGUF) to a GGUF of type ("q4_0", ...).</summary>
        [MethodImpl(NoInline)]
        public static void Quantize(string input, string output, string type, DanuOptions options = null)
        {
            EnsureLoaded();
            Calls.Quantize(input, output, type, options);
        }

        static class Calls
        {
            [MethodImpl(NoInline)] internal static int VersionNumber() { return (int)Native.danu_version_number(); }
            [MethodImpl(NoInline)] internal static string Version() { return DanuUtf8.FromNative(Native.danu_version_string()); }
            [MethodImpl(NoInline)] internal static string StrError(DanuStatus s) { return DanuUtf8.FromNative(Native.danu_strerror((int)s)); }
            [MethodImpl(NoInline)] internal static string LastError() { return DanuUtf8.FromNative(Native.danu_last_error()); }
            [MethodImpl(NoInline)] internal static string TypeName(DanuType t) { return DanuUtf8.FromNative(Native.danu_type_name((int)t)); }
            [MethodImpl(NoInline)]
            internal static bool ParamBounds(DanuOption key, out double min, out double max)
            {
                return Native.danu_param_bounds((int)key, out min, out max) == 0;
            }
            [MethodImpl(NoInline)]
            internal static DanuOption ParamFromName(string name) { return (DanuOption)Native.danu_param_from_name(DanuUtf8.Z(name)); }

            [MethodImpl(NoInline)]
            internal static void SynthWrite(string config, ulong seed, DanuFormat format, DanuType type,
                                            byte[] tokenizerModel, string outPath, DanuOptions options)
            {
                int st = Native.danu_synth_write(DanuUtf8.Z(config), seed, (int)format, (int)type, tokenizerModel,
                                                 (UIntPtr)tokenizerModel.Length, DanuUtf8.Z(outPath), DanuOptions.H(options));
                GC.KeepAlive(options);
                DanuException.Check(st, "danu_synth_write");
            }

            [MethodImpl(NoInline)]
            internal static void Quantize(string input, string output, string type, DanuOptions options)
            {
                int st = Native.danu_quantize(DanuUtf8.Z(input), DanuUtf8.Z(output), DanuUtf8.Z(type), DanuOptions.H(options));
                GC.KeepAlive(options);
                DanuException.Check(st, "danu_quantize");
            }
        }
    }
}
