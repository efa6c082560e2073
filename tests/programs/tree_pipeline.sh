#!/bin/bash
# tree_pipeline: a job script with a three-process pipeline (a producer loop in a subshell that
# runs `sleep` between lines, so a command is running at any moment; sed; a reading loop in
# another subshell), then a command after it. Output protocol of tests/src/lib.rs: "step K"
# lines come from the last stage, which folds every line it read into a running sum; the
# result covers the sum and the pipeline's exit statuses. Deterministic.
n=${1:-80}
delay=${2:-0.05}
echo "start tree_pipeline n=$n"
producer() {
    for ((k = 1; k <= n; k++)); do
        echo "$k"
        sleep "$delay"
    done
}
producer | sed -u 's/^/item /' | {
    s=0
    while read -r word k; do
        [ "$word" = item ] || { echo "error: got '$word $k'"; exit 3; }
        s=$(((s * 31 + k * 7) % 1000003))
        echo "step $k sum=$s"
    done
    echo "$s" > "${TMPDIR:-/tmp}/tree_pipeline.$$.sum"
}
status="${PIPESTATUS[*]}"
s=$(cat "${TMPDIR:-/tmp}/tree_pipeline.$$.sum")
rm -f "${TMPDIR:-/tmp}/tree_pipeline.$$.sum"
echo "result $(echo "$s $status" | md5sum | cut -c1-16)"
