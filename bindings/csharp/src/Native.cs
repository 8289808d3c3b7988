// Native.cs - the P/Invoke declarations of include/danu.h (libdanu 0.2).
//
// Type mapping (ABI.md rule 5: only fixed-width types cross the boundary):
//   int32_t/danu_status/danu_param/danu_token -> int, uint32_t -> uint,
//   int64_t -> long, uint64_t -> ulong, size_t -> UIntPtr, float/double,
//   const char * in  -> byte[] holding NUL-terminated UTF-8 (DanuUtf8.Z),
//   char * out       -> byte[] buffer + capacity,
//   const char * out -> IntPtr decoded by DanuUtf8.FromNative,
//   handles          -> IntPtr (wrapped in the SafeHandles of Handles.cs).
// Every function is cdecl; the library is "danu" (libdanu.so.0 through
// Danu.dll.config on Mono, danu.dll on Windows, see DanuLibrary).
using System;
using System.Runtime.InteropServices;

namespace Danu
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate int NativeTokenFn(IntPtr user, int id, IntPtr text, UIntPtr len);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate int NativeProgressFn(IntPtr user, float fraction);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void NativeLogFn(IntPtr user, int level, IntPtr message);

    internal static class Native
    {
        internal const string Lib = "danu";
        const CallingConvention C = CallingConvention.Cdecl;

        // The DANU_LIBRARY override must be loaded before the first call
        // resolves "danu" (Mono binds a P/Invoke before any static
        // constructor of its class runs): every public entry point that can
        // come first (DanuLibrary's members, the constructors and loaders)
        // calls this.
        internal static bool Touch() { DanuLibrary.EnsureLoaded(); return true; }

        // versions and errors
        [DllImport(Lib, CallingConvention = C)] internal static extern uint danu_version_number();
        [DllImport(Lib, CallingConvention = C)] internal static extern IntPtr danu_version_string();
        [DllImport(Lib, CallingConvention = C)] internal static extern IntPtr danu_strerror(int status);
        [DllImport(Lib, CallingConvention = C)] internal static extern IntPtr danu_last_error();

        // options
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_options_create(IntPtr alloc, out IntPtr opts);
        [DllImport(Lib, CallingConvention = C)] internal static extern void danu_options_free(IntPtr opts);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_options_set_int(OptionsHandle opts, int key, long value);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_options_set_float(OptionsHandle opts, int key, double value);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_options_set_progress(OptionsHandle opts, NativeProgressFn fn, IntPtr user);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_options_set_log(OptionsHandle opts, NativeLogFn fn, IntPtr user);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_param_bounds(int key, out double min, out double max);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_param_from_name(byte[] name);

        // model
        [DllImport(Lib, CallingConvention = C)] internal static extern IntPtr danu_type_name(int type);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_model_load(byte[] path, OptionsHandle opts, out IntPtr model);
        [DllImport(Lib, CallingConvention = C)] internal static extern void danu_model_free(IntPtr model);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_model_get_int(ModelHandle model, int key, out long value);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_model_get_float(ModelHandle model, int key, out double value);
        [DllImport(Lib, CallingConvention = C)] internal static extern IntPtr danu_model_tokenizer(ModelHandle model);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_model_tensor(ModelHandle model, long i, out IntPtr name, out int type,
            out int n_dims, [Out] long[] dims);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_memory_estimate(ModelHandle model, OptionsHandle opts, out UIntPtr bytes);

        // tokenizer
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_tokenizer_load(byte[] path, OptionsHandle opts, out IntPtr tok);
        [DllImport(Lib, CallingConvention = C)] internal static extern void danu_tokenizer_free(IntPtr tok);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_tokenizer_vocab_size(TokenizerHandle tok);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_tokenizer_encode(TokenizerHandle tok, byte[] text, UIntPtr len, uint flags,
            [Out] int[] ids, UIntPtr cap, out UIntPtr n_out);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_tokenizer_decode(TokenizerHandle tok, int[] ids, UIntPtr n,
            [Out] byte[] text, UIntPtr cap, out UIntPtr len_out);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_tokenizer_piece(TokenizerHandle tok, int id, out IntPtr piece, out UIntPtr len);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_chat_encode(TokenizerHandle tok, IntPtr[] roles, IntPtr[] contents, UIntPtr n,
            int add_reply_prompt, [Out] int[] ids, UIntPtr cap, out UIntPtr n_out);

        // decoder
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_decoder_create(TokenizerHandle tok, out IntPtr dec);
        [DllImport(Lib, CallingConvention = C)] internal static extern void danu_decoder_free(IntPtr dec);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_decoder_push(DecoderHandle dec, int id, [Out] byte[] text, UIntPtr cap, out UIntPtr len_out);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_decoder_flush(DecoderHandle dec, [Out] byte[] text, UIntPtr cap, out UIntPtr len_out);

        // context
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_create(ModelHandle model, OptionsHandle opts, out IntPtr ctx);
        [DllImport(Lib, CallingConvention = C)] internal static extern void danu_context_free(IntPtr ctx);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_fork(ContextHandle src, out IntPtr ctx);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_copy(ContextHandle dst, ContextHandle src);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_set_int(ContextHandle ctx, int key, long value);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_set_float(ContextHandle ctx, int key, double value);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_set_logit_bias(ContextHandle ctx, int id, float bias);
        [DllImport(Lib, CallingConvention = C)] internal static extern UIntPtr danu_context_memory_size(ContextHandle ctx);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_eval(ContextHandle ctx, int[] tokens, UIntPtr n, IntPtr all_logits);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_prompt(ContextHandle ctx, int[] tokens, UIntPtr n, out UIntPtr n_reused);
        [DllImport(Lib, CallingConvention = C)] internal static extern IntPtr danu_context_logits(ContextHandle ctx);
        [DllImport(Lib, CallingConvention = C)] internal static extern UIntPtr danu_context_n_tokens(ContextHandle ctx);
        [DllImport(Lib, CallingConvention = C)] internal static extern IntPtr danu_context_tokens(ContextHandle ctx);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_clear(ContextHandle ctx);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_rewind(ContextHandle ctx, UIntPtr n);
        [DllImport(Lib, CallingConvention = C)] internal static extern void danu_context_abort(ContextHandle ctx);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_sample(ContextHandle ctx, out int id);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_add_stop_string(ContextHandle ctx, byte[] s);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_clear_stop_strings(ContextHandle ctx);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_generate(ContextHandle ctx, int max_tokens, NativeTokenFn fn, IntPtr user, out int reason);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_step(ContextHandle ctx, out int id, [Out] byte[] text, UIntPtr cap,
            out UIntPtr len_out, out int reason);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_step_finish(ContextHandle ctx, [Out] byte[] text, UIntPtr cap, out UIntPtr len_out);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_step_sliced(ContextHandle ctx, long budget_us, out int id, [Out] byte[] text,
            UIntPtr cap, out UIntPtr len_out, out int reason);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_chat_append(ContextHandle ctx, IntPtr[] roles, IntPtr[] contents, UIntPtr n,
            int add_reply_prompt);

        // work in slices
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_eval_begin(ContextHandle ctx, int[] tokens, UIntPtr n);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_prompt_begin(ContextHandle ctx, int[] tokens, UIntPtr n, out UIntPtr n_reused);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_chat_append_begin(ContextHandle ctx, IntPtr[] roles, IntPtr[] contents,
            UIntPtr n, int add_reply_prompt);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_work(ContextHandle ctx, long budget_us);
        [DllImport(Lib, CallingConvention = C)] internal static extern UIntPtr danu_context_pending(ContextHandle ctx);

        // state
        [DllImport(Lib, CallingConvention = C)] internal static extern UIntPtr danu_context_state_size(ContextHandle ctx);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_state_save(ContextHandle ctx, [Out] byte[] buf, UIntPtr cap, out UIntPtr written);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_state_load(ContextHandle ctx, byte[] buf, UIntPtr len);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_state_save_file(ContextHandle ctx, byte[] path);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_state_load_file(ContextHandle ctx, byte[] path);

        // constrained output (0.2)
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_constraint_from_grammar(TokenizerHandle tok, byte[] gbnf, UIntPtr len, byte[] root, out IntPtr c);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_constraint_from_json_schema(TokenizerHandle tok, byte[] schema, UIntPtr len, uint flags,
            out IntPtr c);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_constraint_from_choices(TokenizerHandle tok, IntPtr[] choices, UIntPtr n, out IntPtr c);
        [DllImport(Lib, CallingConvention = C)] internal static extern void danu_constraint_free(IntPtr c);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_json_schema_to_grammar(byte[] schema, UIntPtr len, uint flags, [Out] byte[] text,
            UIntPtr cap, out UIntPtr len_out);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_set_constraint(ContextHandle ctx, ConstraintHandle c);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_context_constraint_state(ContextHandle ctx, out int state);

        // tools
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_synth_write(byte[] config, ulong seed, int format, int type, byte[] tokenizer_model,
            UIntPtr tokenizer_len, byte[] out_path, OptionsHandle opts);
        [DllImport(Lib, CallingConvention = C)] internal static extern int danu_quantize(byte[] input, byte[] output, byte[] type, OptionsHandle opts);
    }
}
