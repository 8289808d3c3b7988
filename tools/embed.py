#!/usr/bin/env python3
"""embed.py IN OUT.c SYMBOL - write a file's bytes as a C array (build step)."""
import sys

data = open(sys.argv[1], 'rb').read()
sym = sys.argv[3]
with open(sys.argv[2], 'w') as f:
    f.write('/* generated from %s by tools/embed.py */\n#include <stddef.h>\n' % sys.argv[1].split('/')[-1])
    f.write('const unsigned char %s[] = {\n' % sym)
    for i in range(0, len(data), 24):
        f.write(','.join(str(b) for b in data[i:i + 24]) + ',\n')
    f.write('};\nconst size_t %s_len = %d;\n' % (sym, len(data)))
