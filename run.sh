#!/usr/bin/env bash
# Faultline's one entry point. See README.md.
#   ./run.sh                 boot into the console (interactive on a terminal,
#                            the demo script otherwise)
#   ./run.sh test            host unit tests, then every in-QEMU test
#   ./run.sh --script FILE   boot, run the console commands in FILE, power off;
#                            exit 0 only if every command and expect held
#   ./run.sh debug           QEMU waiting for gdb; prints the gdb command line
#   ./run.sh bench           benchmark figures under -icount shift=0
#   ./run.sh fuzz [--calls N] [--seed S]   a long system-call fuzzer run
set -euo pipefail
cd "$(dirname "$0")"

TARGET=x86_64-unknown-none
QEMU=qemu-system-x86_64
KERNEL=target/$TARGET/debug/faultline
MEMORY=${FAULTLINE_MEMORY:-256M}
TEST_TIMEOUT=${FAULTLINE_TEST_TIMEOUT:-60}
# isa-debug-exit turns the kernel's 0x10 / 0x11 into these statuses.
QEMU_SUCCESS=33
QEMU_FAILURE=35

say() { printf '%s\n' "$*" >&2; }

# --- installing what is missing -------------------------------------------

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        say "run.sh: cargo not found. Install Rust with rustup (https://rustup.rs), then run again."
        exit 1
    fi
    if command -v rustup >/dev/null 2>&1 &&
        ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
        say "run.sh: adding the Rust target $TARGET"
        rustup target add "$TARGET" >&2 || {
            say "run.sh: 'rustup target add $TARGET' failed; run it by hand."
            exit 1
        }
    fi
}

ensure_qemu() {
    command -v "$QEMU" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "run.sh: installing qemu-system-x86 with apt-get"
        if DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 >&2; then
            command -v "$QEMU" >/dev/null 2>&1 && return 0
        fi
    fi
    say "run.sh: $QEMU is missing and could not be installed automatically."
    say "        Install it by hand, e.g. on Debian/Ubuntu:"
    say "            sudo apt-get update && sudo apt-get install -y qemu-system-x86"
    exit 1
}

ensure_tools() {
    ensure_rust
    ensure_qemu
}

build_kernel() {
    cargo build --quiet --target "$TARGET" -p faultline-boot --bin faultline
}

# --- running QEMU -----------------------------------------------------------

# qemu_args KERNEL: the flags every run shares. -no-reboot turns a triple
# fault into an exit with status 0, which run.sh never counts as success.
qemu_args() {
    printf '%s\n' -machine q35 -accel tcg -cpu max -m "$MEMORY" \
        -display none -no-reboot \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel "$1"
}

# boot_qemu KERNEL TIMEOUT [QEMU ARGS...]: serial on stdout, no monitor.
boot_qemu() {
    local kernel=$1 limit=$2
    shift 2
    local args
    mapfile -t args < <(qemu_args "$kernel")
    timeout "$limit" "$QEMU" "${args[@]}" -serial stdio -monitor none "$@"
}

# run_script FILE [QEMU ARGS...]: exit 0 iff the kernel powered off with success.
run_script() {
    local file=$1
    shift
    if [ ! -f "$file" ]; then
        say "run.sh: no such script file: $file"
        return 1
    fi
    local status=0
    boot_qemu "$KERNEL" "$TEST_TIMEOUT" -initrd "$file" "$@" </dev/null || status=$?
    case $status in
        "$QEMU_SUCCESS") return 0 ;;
        124) say "run.sh: the kernel did not finish within ${TEST_TIMEOUT}s" ;;
        "$QEMU_FAILURE") ;;
        *) say "run.sh: QEMU exited with status $status (a triple fault or a QEMU error)" ;;
    esac
    return 1
}

interactive() {
    local args
    mapfile -t args < <(qemu_args "$KERNEL")
    say "run.sh: booting Faultline; type 'help', 'halt' to power off, Ctrl-A X to quit QEMU."
    local status=0
    "$QEMU" "${args[@]}" -serial mon:stdio || status=$?
    [ "$status" = "$QEMU_SUCCESS" ]
}

debug() {
    local args
    mapfile -t args < <(qemu_args "$KERNEL")
    say "run.sh: QEMU is waiting for gdb on localhost:1234. In another terminal:"
    say "    gdb $KERNEL -ex 'target remote localhost:1234'"
    "$QEMU" "${args[@]}" -serial mon:stdio -s -S
}

bench() {
    local out
    out=$(mktemp)
    local status=0
    # -icount shift=0: one instruction per virtual nanosecond, and the TSC
    # follows virtual time, so the figures repeat exactly.
    boot_qemu "$KERNEL" 300 -icount shift=0 -initrd scripts/bench.fl </dev/null >"$out" 2>&1 || status=$?
    if [ "$status" != "$QEMU_SUCCESS" ]; then
        cat "$out" >&2
        say "run.sh: the benchmark kernel failed (status $status)"
        rm -f "$out"
        return 1
    fi
    grep -Eo '^[a-z0-9_]+_(instructions|cycles)=[0-9]+' "$out"
    rm -f "$out"
}

# --- tests ------------------------------------------------------------------

PASSED=0
FAILED=0
FAILED_NAMES=()

pass() {
    PASSED=$((PASSED + 1))
    printf 'test %s ... ok\n' "$1"
}

fail() {
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("$1")
    printf 'test %s ... FAILED%s\n' "$1" "${2:+ ($2)}"
}

host_tests() {
    local log
    log=$(mktemp)
    echo "== host unit tests (cargo test -p faultline-kernel -p faultline-arch)"
    if cargo test --quiet -p faultline-kernel -p faultline-arch >"$log" 2>&1; then
        :
    fi
    # One line per test binary: "test result: ok. N passed; M failed; ..."
    local p f
    p=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
    f=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
    if ! grep -q 'test result:' "$log"; then
        cat "$log"
        fail "host unit tests" "did not build"
        rm -f "$log"
        return
    fi
    grep -E '^test .* FAILED|^---- |panicked' "$log" || true
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    [ "$f" = 0 ] || FAILED_NAMES+=("host unit tests ($f)")
    echo "host: $p passed, $f failed"
    rm -f "$log"
}

# Test kernels: every [[test]] of tests/Cargo.toml, built for the bare-metal
# target. cargo prints their paths as JSON; no jq needed for this one field.
test_kernels() {
    # First build for people (errors visible), then ask for the paths.
    cargo test --quiet --target "$TARGET" -p faultline-tests --no-run >&2 || return 1
    cargo test --quiet --target "$TARGET" -p faultline-tests --no-run --message-format=json 2>/dev/null |
        grep -o '"executable":"[^"]*"' | sed 's/"executable":"\(.*\)"/\1/'
}

# Kernels built to die: the exit must be the failure status and the report
# must name what the runner expects.
declare -A EXPECT_FAULT=(
    [page_fault]='cr2=0xdeadbeef000'
    [stack_overflow]='double_fault_stack=yes'
    [task_stack_overflow]='double_fault_stack=yes'
)

kernel_name() {
    basename "$1" | sed 's/-[0-9a-f]*$//'
}

# run_fault_kernel NAME ELF
run_fault_kernel() {
    local name=$1 elf=$2 out status=0
    out=$(mktemp)
    boot_qemu "$elf" "$TEST_TIMEOUT" </dev/null >"$out" 2>&1 || status=$?
    sed 's/^/    /' "$out"
    if [ "$status" = "$QEMU_FAILURE" ] && grep -q 'EXCEPTION:' "$out" && grep -qF "${EXPECT_FAULT[$name]}" "$out"; then
        pass "$name (fault reported, run counted as failed)"
    else
        fail "$name" "status $status; wanted $QEMU_FAILURE and '${EXPECT_FAULT[$name]}' in the report"
    fi
    rm -f "$out"
}

# run_test_kernel NAME ELF TIMEOUT: the kernel runs its tests from index
# start=K and prints "test NAME ... ok|FAILED". After a panic, fault or hang
# the runner boots it again from the test after the one that failed. Results
# go to RESULTS as "test|ok" or "test|FAILED|why"; kernel output is indented.
RESULTS=()
run_test_kernel() {
    local name=$1 elf=$2 limit=$3 start=0 out status
    RESULTS=()
    out=$(mktemp)
    while :; do
        status=0
        boot_qemu "$elf" "$limit" -append "start=$start" </dev/null >"$out" 2>&1 || status=$?
        local results=0 oks=0 current="" line
        while IFS= read -r line; do
            line=${line%$'\r'}
            if [[ $line =~ ^test\ ([^ ]+)\ \.\.\.\ (ok|FAILED) ]]; then
                results=$((results + 1))
                current=""
                [ "${BASH_REMATCH[2]}" = ok ] && oks=$((oks + 1))
                RESULTS+=("${BASH_REMATCH[1]}|${BASH_REMATCH[2]}")
            elif [[ $line =~ ^test\ ([^ ]+)\ \.\.\.$ ]]; then
                current=${BASH_REMATCH[1]}
            else
                printf '    %s\n' "$line"
            fi
        done <"$out"
        if grep -q '^test-kernel done' "$out" && [ "$status" = "$QEMU_SUCCESS" ]; then
            # The kernel counts its passes too: a result the runner missed
            # must not vanish silently.
            local claimed
            claimed=$(sed -n 's/^test-kernel done passed=\([0-9]*\).*/\1/p' "$out" | tr -d '\r')
            if [ "${claimed:-x}" != "$oks" ]; then
                RESULTS+=("(result count)|FAILED|kernel reported ${claimed:-no} passes, runner saw $oks")
            fi
            break
        fi
        if [ -n "$current" ]; then
            # Started but never finished: a fault, a hang or a reboot.
            if [ "$status" = 124 ]; then
                RESULTS+=("$current|FAILED|timed out after ${limit}s")
            else
                RESULTS+=("$current|FAILED|kernel died, status $status")
            fi
            results=$((results + 1))
        elif grep -q '^test-kernel done' "$out" || [ "$results" = 0 ]; then
            # Finished with failures, or died before running any test.
            [ "$results" = 0 ] && RESULTS+=("(boot)|FAILED|kernel died before its tests, status $status")
            break
        fi
        start=$((start + results))
    done
    rm -f "$out"
}

report_results() {
    local name=$1 r test verdict why
    for r in "${RESULTS[@]}"; do
        IFS='|' read -r test verdict why <<<"$r"
        if [ "$verdict" = ok ]; then pass "$name::$test"; else fail "$name::$test" "$why"; fi
    done
}

# The harness self-test kernel must produce exactly this.
SELFTEST_EXPECTED="passes_first|ok panics|FAILED faults|FAILED|kernel died, status $QEMU_FAILURE hangs|FAILED|timed out after 5s passes_last|ok"

run_selftest_kernel() {
    local elf=$1
    run_test_kernel harness_selftest "$elf" 5 >/dev/null
    local got="${RESULTS[*]}"
    if [ "$got" = "$SELFTEST_EXPECTED" ]; then
        pass "harness_selftest (panic, fault and hang reported by name; later tests still ran)"
    else
        fail "harness_selftest" "got: $got"
    fi
}

# Console scripts run by the real kernel: tests/scripts/*.fl must succeed,
# tests/scripts/fail/*.fl must make the kernel report failure.
script_tests() {
    local f out
    out=$(mktemp)
    for f in tests/scripts/*.fl; do
        if run_script "$f" >"$out" 2>&1; then pass "script:$(basename "$f")"; else sed 's/^/    /' "$out"; fail "script:$(basename "$f")"; fi
    done
    for f in tests/scripts/fail/*.fl; do
        if run_script "$f" >"$out" 2>&1; then sed 's/^/    /' "$out"; fail "script-must-fail:$(basename "$f")" "it succeeded"; else pass "script-must-fail:$(basename "$f")"; fi
    done
    rm -f "$out"
}

# The interactive console, typed into through a pipe: bad input gets an
# error line and the shell goes on; Ctrl-C (\003) ends a program `run` is
# waiting for; the failures counted make `halt` power off with failure.
console_test() {
    local out status=0
    out=$(mktemp)
    # The leading newline: bytes that arrive before the UART is programmed are
    # dropped when its FIFO is reset.
    printf '\nhelp\nno_such_command\nmem extra\necho typed=42\nexpect typed == 42\nrun spin 1 1000000000\n\003\nhalt\n' |
        boot_qemu "$KERNEL" "$TEST_TIMEOUT" >"$out" 2>&1 || status=$?
    if [ "$status" = "$QEMU_FAILURE" ] && grep -q 'faultline> ' "$out" &&
        grep -q "error: unknown command 'no_such_command'" "$out" &&
        grep -q 'usage: mem' "$out" && grep -q 'expect typed == 42: ok' "$out" &&
        grep -q 'exited exit_status=130' "$out"; then
        pass "console:interactive_bad_input_then_halt"
    else
        sed 's/^/    /' "$out"
        fail "console:interactive_bad_input_then_halt" "status $status"
    fi
    rm -f "$out"
}

# A boot module that is not text, and a script file that does not exist,
# each get a clear message and a failed run.
module_tests() {
    local bin out
    bin=$(mktemp)
    out=$(mktemp)
    printf 'mem\n\377\376\000garbage\n' >"$bin"
    if ! run_script "$bin" >"$out" 2>&1 && grep -q 'not a text script' "$out"; then
        pass "module:binary_script_refused"
    else
        sed 's/^/    /' "$out"
        fail "module:binary_script_refused"
    fi
    if ! run_script /nonexistent/script.fl >"$out" 2>&1 && grep -q 'no such script file' "$out"; then
        pass "module:missing_script_file"
    else
        fail "module:missing_script_file"
    fi
    rm -f "$bin" "$out"
}

run_tests() {
    local begin=$SECONDS
    host_tests
    echo "== building kernels"
    local kernels=""
    if ! build_kernel || ! kernels=$(test_kernels); then
        fail "kernel build" "see the compiler errors above"
    fi
    echo "== in-QEMU test kernels"
    local elf name
    for elf in $kernels; do
        name=$(kernel_name "$elf")
        if [ -n "${EXPECT_FAULT[$name]:-}" ]; then
            run_fault_kernel "$name" "$elf"
        elif [ "$name" = harness_selftest ]; then
            run_selftest_kernel "$elf"
        else
            run_test_kernel "$name" "$elf" "$TEST_TIMEOUT"
            report_results "$name"
        fi
    done
    echo "== console scripts"
    console_test
    script_tests
    module_tests
    echo "== done in $((SECONDS - begin))s"
    if [ "$FAILED" -gt 0 ]; then
        printf 'failed: %s\n' "${FAILED_NAMES[@]}"
    fi
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
}

# --- the fuzzer ---------------------------------------------------------------

# fuzz [--calls N] [--seed S] [--switch NAME]...: a longer run of the
# system-call fuzzer than the suite's tests/scripts/fuzz.fl, in its shape
# and with its leak checks (whose comments there say what they allow and
# why): a warm-up round, then four instances of N calls (seeds S..S+3)
# beside a fifth killed mid-run. A failure prints the seed and the call
# that reproduce it (`run fuzz SEED CALLS` at the console).
fuzz() {
    local calls=200000 seed=$((RANDOM * 32768 + RANDOM)) switches="" usage
    usage="usage: ./run.sh fuzz [--calls N] [--seed S] [--switch wait-order|stack-zero]..."
    while [ $# -gt 0 ]; do
        case $1 in
            --calls) calls=${2:-}; shift 2 || break ;;
            --seed) seed=${2:-}; shift 2 || break ;;
            --switch) switches="$switches ${2:-}"; shift 2 || break ;;
            *) say "$usage"; return 2 ;;
        esac
    done
    if ! [[ $calls =~ ^[1-9][0-9]*$ && $seed =~ ^[0-9]+$ ]]; then
        say "$usage"
        return 2
    fi
    local script out status=0 round base n i
    script=$(mktemp)
    out=$(mktemp)
    for round in warm-up run; do
        if [ "$round" = warm-up ]; then base=$((seed + 1000)) n=5000; else base=$seed n=$calls; fi
        for i in 0 1 2 3; do
            echo "spawn fuzz $((base + i)) $n$switches"
            echo "let f$i \$tid"
        done
        echo "spawn fuzz $((base + 4)) 0$switches"
        echo "let victim \$tid"
        echo "wait \$f0"
        echo "expect exit_status == 0"
        echo "kill \$victim"
        echo "wait \$victim"
        echo "expect exit_status == 137"
        for i in 1 2 3; do
            echo "wait \$f$i"
            echo "expect exit_status == 0"
        done
        if [ "$round" = warm-up ]; then
            echo "mem"
            echo "let heap_pages \$heap_bytes / 4096"
            echo "let unowned_before \$frames_free + \$heap_pages"
            echo "let unowned_floor \$unowned_before - 10"
            echo "let heap_used_limit \$heap_used + 16K"
            echo "uptime"
            echo "let start_ms \$uptime_ms"
        fi
    done >"$script"
    cat >>"$script" <<'FL'
uptime
let fuzz_ms $uptime_ms - $start_ms
mem
let heap_pages $heap_bytes / 4096
let unowned $frames_free + $heap_pages
expect unowned >= $unowned_floor
expect unowned <= $unowned_before
expect heap_used <= $heap_used_limit
ps
expect tid == 1
FL
    echo "run.sh: fuzzing with seeds $seed..$((seed + 3)), $calls calls each${switches:+, switches:$switches}"
    local begin=$SECONDS ms
    # At least 2000 calls per second even on a loaded machine, and the boot.
    TEST_TIMEOUT=$((60 + 4 * calls / 2000)) run_script "$script" >"$out" 2>&1 || status=$?
    grep -aE '^fuzz seed=[0-9]+ ok|^fuzz FAIL|^expect FAILED|^error|killed:|^script:|^run.sh' "$out" || true
    ms=$(sed -n 's/^fuzz_ms=\([0-9]*\).*/\1/p' "$out" | tr -d '\r')
    if [ -n "$ms" ] && [ "$ms" -gt 0 ]; then
        echo "fuzz: $((4 * calls)) calls (and the victim's) in $ms ms of kernel time:" \
            "$((4 * calls * 1000 / ms)) calls/s; whole run with boot $((SECONDS - begin)) s wall"
    fi
    rm -f "$script" "$out"
    return "$status"
}

# --- main -------------------------------------------------------------------

case ${1:-} in
    "")
        ensure_tools
        build_kernel
        if [ -t 0 ]; then interactive; else run_script scripts/demo.fl; fi
        ;;
    test)
        ensure_tools
        run_tests
        ;;
    --script)
        [ $# -ge 2 ] || { say "usage: ./run.sh --script FILE"; exit 2; }
        ensure_tools
        build_kernel
        run_script "$2"
        ;;
    debug)
        ensure_tools
        build_kernel
        debug
        ;;
    bench)
        ensure_tools
        build_kernel
        bench
        ;;
    fuzz)
        ensure_tools
        build_kernel
        shift
        fuzz "$@"
        ;;
    -h | --help | help)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    *)
        say "run.sh: unknown command '$1' (try ./run.sh help)"
        exit 2
        ;;
esac
