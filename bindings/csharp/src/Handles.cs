// Handles.cs - SafeHandles over the opaque danu_* pointers.
//
// A handle that borrows another object keeps it alive with DangerousAddRef
// and lets it go in its own ReleaseHandle, so the C lifetime rules hold
// whatever order Dispose and the finalizers run in: a model is freed only
// after every context, borrowed tokenizer and decoder on it is released
// (danu_model_free "after its contexts"; a decoder's tokenizer outlives it).
using System;
using System.Runtime.InteropServices;

namespace Danu
{
    /// <summary>Base of the danu handles: owns one native pointer, optionally
    /// holds a reference on the handle it borrows from.</summary>
    public abstract class DanuHandle : SafeHandle
    {
        SafeHandle parent;

        protected DanuHandle(bool ownsHandle) : base(IntPtr.Zero, ownsHandle) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        internal void Init(IntPtr ptr, SafeHandle borrowsFrom)
        {
            if (borrowsFrom != null)
            {
                bool added = false;
                borrowsFrom.DangerousAddRef(ref added);
                parent = borrowsFrom;
            }
            SetHandle(ptr);
        }

        protected override bool ReleaseHandle()
        {
            if (handle != IntPtr.Zero) Free(handle);
            handle = IntPtr.Zero;
            SafeHandle p = parent;
            parent = null;
            if (p != null) p.DangerousRelease();
            return true;
        }

        /// <summary>Frees the native object (the matching danu_*_free).</summary>
        protected abstract void Free(IntPtr ptr);
    }

    public sealed class OptionsHandle : DanuHandle
    {
        /// <summary>Stands for a NULL danu_options * (the library's defaults).</summary>
        internal static readonly OptionsHandle Null = new OptionsHandle();
        public OptionsHandle() : base(true) { }
        protected override void Free(IntPtr p) { Native.danu_options_free(p); }
    }

    public sealed class ModelHandle : DanuHandle
    {
        public ModelHandle() : base(true) { }
        protected override void Free(IntPtr p) { Native.danu_model_free(p); }
    }

    public sealed class TokenizerHandle : DanuHandle
    {
        readonly bool owned;
        /// <summary>owned: from danu_tokenizer_load (freed with danu_tokenizer_free);
        /// otherwise borrowed from a model (never freed, keeps the model alive).</summary>
        internal TokenizerHandle(bool owned) : base(true) { this.owned = owned; }
        public TokenizerHandle() : this(true) { }
        protected override void Free(IntPtr p) { if (owned) Native.danu_tokenizer_free(p); }
    }

    public sealed class DecoderHandle : DanuHandle
    {
        public DecoderHandle() : base(true) { }
        protected override void Free(IntPtr p) { Native.danu_decoder_free(p); }
    }

    public sealed class ContextHandle : DanuHandle
    {
        public ContextHandle() : base(true) { }
        protected override void Free(IntPtr p) { Native.danu_context_free(p); }
    }

    public sealed class ConstraintHandle : DanuHandle
    {
        /// <summary>Stands for a NULL danu_constraint * (remove the constraint).</summary>
        internal static readonly ConstraintHandle Null = new ConstraintHandle();
        public ConstraintHandle() : base(true) { }
        protected override void Free(IntPtr p) { Native.danu_constraint_free(p); }
    }
}
