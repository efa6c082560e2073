#!/bin/bash
# tree_make: a job that builds a small C project with `make -j2`: it writes 8 C files, a slow
# one (many functions, compiled with -O2: its compiler runs for seconds) and a Makefile into a
# folder of its own, builds them (make starts cc with posix_spawn, gcc starts cc1 and as with
# vfork), runs the program and prints its output and a digest of the binary. Output protocol
# of tests/src/lib.rs: "step 3" comes from the slow file's recipe once its compiler (cc1) runs,
# so that a checkpoint asked then catches the compilers running. Deterministic.
# The original run goes on after the checkpoint until the harness kills it, and may finish: what
# it does to files must not break the restarted one. So the compilers talk through pipes (-pipe:
# no temporary .s files that the original's gcc would delete), the outputs are rewritten with the
# same bytes, and the folder is left for the test's work dir to remove.
set -e
n=${1:-8}
big=${2:-1000}
echo "start tree_make files=$n big=$big"
d=$(mktemp -d "$PWD/tree_make.XXXXXX")
cd "$d"
export TMPDIR="$d"
objs=""
for ((i = 1; i <= n; i++)); do
    printf 'unsigned long f%d(unsigned long x) { for (int k = 0; k < %d; k++) x = x * 6364136223846793005UL + %d; return x; }\n' "$i" "$((i * 1000))" "$i" > "f$i.c"
    objs="$objs f$i.o"
done
{
    for ((j = 1; j <= big; j++)); do
        printf '__attribute__((noinline)) unsigned long s%d(unsigned long x) { for (int k = 0; k < %d; k++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x += %d; } return x; }\n' "$j" "$((j % 7 + 1))" "$j"
    done
    printf 'unsigned long slow(unsigned long x) {\n'
    for ((j = 1; j <= big; j++)); do
        printf '    x = s%d(x);\n' "$j"
    done
    printf '    return x;\n}\n'
} > slow.c
{
    echo '#include <stdio.h>'
    for ((i = 1; i <= n; i++)); do echo "unsigned long f$i(unsigned long);"; done
    echo 'unsigned long slow(unsigned long);'
    echo 'int main(void) { unsigned long x = 1;'
    for ((i = 1; i <= n; i++)); do echo "    x = f$i(x);"; done
    echo '    x = slow(x); printf("%lu\n", x); return 0; }'
} > main.c
cat > Makefile <<MK
prog: main.o $objs slow.o
	cc -o prog main.o $objs slow.o
slow.o: slow.c
	@cc -pipe -O2 -c slow.c -o slow.o & c=\$\$!; until pgrep -x cc1 -P \$\$c >/dev/null || ! kill -0 \$\$c 2>/dev/null; do sleep 0.05; done; echo "step 3 compiling slow.c"; wait \$\$c
%.o: %.c
	cc -pipe -O1 -c \$< -o \$@
MK
echo "step 1 wrote $n files and slow.c"
echo "step 2 make -j2"
make -s -j2
echo "step 4 built"
out=$(./prog)
echo "step 5 output $out"
sum=$(md5sum prog | cut -c1-16)
echo "step 6 binary $sum"
echo "result $(echo "$out $sum" | md5sum | cut -c1-16)"
