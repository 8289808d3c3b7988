#!/usr/bin/env python3
"""make_corpus.py OUTDIR [DATADIR] - seed corpora for the fuzz harnesses,
derived from the real files in tests/data. Large inputs are shrunk so the
fuzzer mutates headers rather than weights: GGUF tensors keep their names,
types and metadata but get one block of data each; safetensors shards keep
their tensor names and dtypes with two elements each; tokenizer.model is
cut to its first 300 and 1200 pieces (the whole
file would make every mutation slow). Output: OUTDIR/<target>/<seed files>."""
import json, os, struct, sys

here = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1]
data = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, '..', 'data')

# ggml type -> (block elements, block bytes)
BLOCK = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
         12: (256, 144), 13: (256, 176), 14: (256, 210), 30: (1, 2)}
SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def put(target, name, blob):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(blob)


def gguf_shrink(buf, keep_tensors=True):
    """Re-emit a GGUF with every tensor cut to one block (same n_dims, type)."""
    p = 4
    version, n_t, n_kv = struct.unpack_from('<IQQ', buf, p)
    p += 20
    kv_start = p

    def skip_str(p):
        (n,) = struct.unpack_from('<Q', buf, p)
        return p + 8 + n

    def skip_val(p, t):
        if t in SCALAR:
            return p + SCALAR[t]
        if t == 8:
            return skip_str(p)
        et, cnt = struct.unpack_from('<IQ', buf, p)
        p += 12
        if et == 8:
            for _ in range(cnt):
                p = skip_str(p)
            return p
        return p + SCALAR[et] * cnt

    align = 32
    for _ in range(n_kv):
        (kl,) = struct.unpack_from('<Q', buf, p)
        key = buf[p + 8:p + 8 + kl]
        p += 8 + kl
        (t,) = struct.unpack_from('<I', buf, p)
        p += 4
        if key == b'general.alignment' and t == 4:
            (align,) = struct.unpack_from('<I', buf, p)
        p = skip_val(p, t)
    kv = buf[kv_start:p]
    infos = []
    for _ in range(n_t):
        (nl,) = struct.unpack_from('<Q', buf, p)
        name = buf[p + 8:p + 8 + nl]
        p += 8 + nl
        (nd,) = struct.unpack_from('<I', buf, p)
        p += 4 + 8 * nd
        ttype, _off = struct.unpack_from('<IQ', buf, p)
        p += 12
        infos.append((name, nd, ttype))
    if not keep_tensors:
        infos = []
    head = b'GGUF' + struct.pack('<IQQ', version, len(infos), n_kv) + kv
    table, off = b'', 0
    for name, nd, ttype in infos:
        be, bb = BLOCK[ttype]
        table += struct.pack('<Q', len(name)) + name + struct.pack('<I', nd)
        table += struct.pack('<Q', be) + struct.pack('<Q', 1) * (nd - 1)
        table += struct.pack('<IQ', ttype, off)
        off += (bb + align - 1) // align * align
    blob = head + table
    blob += b'\0' * ((align - len(blob) % align) % align)
    return blob + bytes((i * 7) & 0xff for i in range(off))


def st_shrink(buf):
    """A safetensors file with the same tensor names/dtypes, 2 elements each."""
    (hl,) = struct.unpack_from('<Q', buf, 0)
    hdr = json.loads(buf[8:8 + hl])
    size = {'BF16': 2, 'F16': 2, 'F32': 4}
    new, off = {}, 0
    for k, v in hdr.items():
        if k == '__metadata__':
            new[k] = v
            continue
        n = 2 * size.get(v['dtype'], 4)
        new[k] = {'dtype': v['dtype'], 'shape': [2] if len(v['shape']) == 1 else [1, 2],
                  'data_offsets': [off, off + n]}
        off += n
    h = json.dumps(new, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    return struct.pack('<Q', len(h)) + h + bytes((i * 5) & 0xff for i in range(off)), hdr


def pb_fields(buf):
    """Top-level protobuf fields: (field number, raw bytes of the whole field)."""
    p, res = 0, []
    while p < len(buf):
        start = p
        key, p = varint(buf, p)
        wt = key & 7
        if wt == 0:
            _, p = varint(buf, p)
        elif wt == 2:
            n, p = varint(buf, p)
            p += n
        elif wt == 5:
            p += 4
        elif wt == 1:
            p += 8
        res.append((key >> 3, buf[start:p]))
    return res


def varint(buf, p):
    v, s = 0, 0
    while True:
        b = buf[p]
        p += 1
        v |= (b & 0x7f) << s
        s += 7
        if b < 0x80:
            return v, p


def main():
    gdir = os.path.join(data, 'gguf-llamacpp')
    for name in ('tiny-q-F16', 'tiny-q-Q4_0', 'tiny-q-Q4_K_M', 'tiny-q-Q6_K', 'tiny-q-bf16'):
        with open(os.path.join(gdir, name + '.gguf'), 'rb') as f:
            buf = f.read()
        small = gguf_shrink(buf)
        put('gguf', name + '.gguf', small)
        put('gguf_tokenizer', name + '.gguf', small)
        put('gguf', name + '-head64k', buf[:65536])
    with open(os.path.join(gdir, 'tiny-q-Q8_0.gguf'), 'rb') as f:
        put('gguf_tokenizer', 'no-tensors.gguf', gguf_shrink(f.read(), keep_tensors=False))

    hf = os.path.join(data, 'tiny-b-hf')
    jsons = []
    for fn in sorted(os.listdir(hf)):
        path = os.path.join(hf, fn)
        if fn.endswith('.safetensors'):
            with open(path, 'rb') as f:
                buf = f.read()
            small, hdr = st_shrink(buf)
            put('safetensors', fn, small)
            (hl,) = struct.unpack_from('<Q', buf, 0)
            jsons.append((fn + '.header.json', buf[8:8 + hl]))
        elif fn.endswith('.json'):
            with open(path, 'rb') as f:
                jsons.append((fn, f.read()))
    ddir = os.path.join(data, 'danube')
    for fn in sorted(os.listdir(ddir)):
        with open(os.path.join(ddir, fn), 'rb') as f:
            jsons.append(('danube-' + fn, f.read()))
    for fn, blob in jsons:
        put('json', fn, blob)
        if 'config' in fn and 'tokenizer' not in fn and 'generation' not in fn:
            put('config', fn, blob)
    cfg = json.loads(dict(jsons)['config.json'])
    llama = dict(cfg, architectures=['LlamaForCausalLM'], model_type='llama', rope_theta=500000.0)
    llama.pop('rope_parameters', None)
    put('config', 'llama-style.json', json.dumps(llama).encode())
    put('config', 'scaling.json', json.dumps(dict(cfg, rope_scaling={'type': 'linear', 'factor': 2.0})).encode())

    with open(os.path.join(data, 'llama2-tokenizer', 'tokenizer.model'), 'rb') as f:
        spm = f.read()
    fields = pb_fields(spm)
    for keep in (300, 1200):
        kept, n = [], 0
        for num, raw in fields:
            if num == 1:
                n += 1
                if n > keep:
                    continue
            kept.append(raw)
        put('spm', 'pieces-%d.model' % keep, b''.join(kept))

    grammars = [
        b'root ::= "a" | "b" ( [c-e]+ | "x"? ) "!"\n',
        b'root ::= obj\nobj ::= "{" ws (str ":" ws val ("," ws str ":" ws val)*)? "}"\n'
        b'val ::= obj | str | [0-9]{1,3} | "true"\nstr ::= "\\"" [^"\\\\]* "\\""\nws ::= [ ]?\n',
        b'root ::= [^\\x00-\\x1f]{2,5} # comment\n  \n',
        b'root ::= ("\xc3\xa9t\xc3\xa9" | "\\u00e9" | .)+\n',
    ]
    for i, g in enumerate(grammars):
        put('gbnf', 'grammar-%d' % i, g)
        put('gbnf', 'grammar-%d-text' % i, g + b'\0' + b'{"ab": true}')
    n = 0
    with open(os.path.join(data, 'llama2-tokenizer', 'cases.tsv')) as f:
        for line in f:
            if line.startswith('#') or '\t' not in line:
                continue
            hexs, ids = line.rstrip('\n').split('\t')[:2]
            if n % 4 == 0:
                put('tok_encode', 'case-%03d' % n, bytes([0]) + bytes.fromhex(hexs))
                put('tok_decode', 'case-%03d' % n, b''.join(struct.pack('<i', int(x)) for x in ids.split()))
            n += 1
            if n >= 400:
                break
    put('tok_encode', 'bos-special', bytes([5]) + '<s>Hi </s> <unk> ▁x\n\tébc 😀'.encode())

    # JSON Schema seeds: one per supported construct, and a few refused ones
    schemas = {
        'object': {'type': 'object', 'properties': {'a': {'type': 'integer', 'minimum': -123, 'maximum': 4567},
                   'b': {'type': 'string', 'minLength': 1, 'maxLength': 8}, 'c': {'type': 'boolean'}},
                   'required': ['b'], 'additionalProperties': False},
        'array': {'type': 'array', 'items': {'type': ['number', 'null']}, 'minItems': 1, 'maxItems': 3},
        'enum': {'enum': ['a"b', 1.5, None, {'k': [True]}], 'title': 'x'},
        'tree': {'$defs': {'node': {'type': 'object', 'properties': {'v': {'type': 'integer'},
                 'kids': {'type': 'array', 'items': {'$ref': '#/$defs/node'}}}, 'required': ['v']}},
                 '$ref': '#/$defs/node'},
        'anyof': {'anyOf': [{'type': 'integer', 'exclusiveMaximum': 0}, {'const': 'x'}, {'$ref': '#/definitions/m'}],
                  'definitions': {'m': {'additionalProperties': {'type': 'string'}}}},
        'any': {},
        'refused': {'type': 'string', 'pattern': '^a'},
    }
    for name, sch in schemas.items():
        put('json_schema', name + '.json', json.dumps(sch).encode())


main()
