#!/usr/bin/env bash
# Faultline's one entry point. See README.md.
#   ./run.sh                 boot into the console (interactive on a terminal,
#                            the demo script otherwise)
#   ./run.sh test            host unit tests, then every in-QEMU test
#   ./run.sh --script FILE   boot, run the console commands in FILE, power off;
#                            exit 0 only if every command and expect held
#   ./run.sh --program PATH  (repeatable; with the console, --script or debug)
#                            the static ELF at PATH is program `basename PATH`
#   ./run.sh debug           QEMU waiting for gdb; prints the gdb command line
#   ./run.sh bench           benchmark figures under -icount shift=0
#   ./run.sh fuzz [--calls N] [--seed S]   a long system-call fuzzer run
#   --cpus N                 (with any of them) QEMU's -smp N; 2 unless told
set -euo pipefail
cd "$(dirname "$0")"

TARGET=x86_64-unknown-none
QEMU=qemu-system-x86_64
KERNEL=target/$TARGET/debug/faultline
MEMORY=${FAULTLINE_MEMORY:-256M}
# CPUs QEMU gives the kernel (-smp); --cpus N overrides, and some test
# kernels name their own (KERNEL_CPUS).
CPUS=2
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
    command -v rustup >/dev/null 2>&1 || return 0
    if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
        say "run.sh: adding the Rust target $TARGET"
        rustup target add "$TARGET" >&2 || {
            say "run.sh: 'rustup target add $TARGET' failed; run it by hand."
            exit 1
        }
    fi
    # rust-toolchain.toml lists them, but a toolchain installed before that
    # file (or with another profile) may lack them; the lint tests need both.
    local installed component
    installed=$(rustup component list --installed 2>/dev/null || true)
    for component in clippy rustfmt; do
        grep -q "^$component" <<<"$installed" && continue
        say "run.sh: adding the Rust component $component"
        rustup component add "$component" >&2 || {
            say "run.sh: 'rustup component add $component' failed; run it by hand."
            exit 1
        }
    done
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
    printf '%s\n' -machine q35 -accel tcg -cpu max -m "$MEMORY" -smp "$CPUS" \
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

# boot_watched KERNEL LIMIT OUT [QEMU ARGS...]: boot_qemu into OUT for a
# test kernel, whose deadline moves with its progress: TEST_TIMEOUT to boot
# and start its first test, then LIMIT seconds from each test's start line
# (and from its closing line) to the next. So a slow boot never passes for
# a hung test, and a hung test is caught LIMIT seconds after it began. A
# kernel that never stops starting tests is still stopped at ten times
# TEST_TIMEOUT. Returns QEMU's status, or 124 when a deadline passed.
boot_watched() {
    local kernel=$1 limit=$2 out=$3 args pid seen=0 now deadline
    shift 3
    mapfile -t args < <(qemu_args "$kernel")
    timeout "$((10 * TEST_TIMEOUT))" "$QEMU" "${args[@]}" -serial stdio -monitor none "$@" \
        </dev/null >"$out" 2>&1 &
    pid=$!
    deadline=$((SECONDS + TEST_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        now=$(grep -cE $'^test [^ ]+ \\.\\.\\.\r?$|^test-kernel done' "$out" || true)
        if [ "$now" != "$seen" ]; then
            seen=$now
            deadline=$((SECONDS + limit))
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            # timeout passes the signal on to QEMU and waits for it.
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" || true
            return 124
        fi
        sleep 0.2
    done
    wait "$pid"
}

# run_script FILE [QEMU ARGS...]: exit 0 iff the kernel powered off with success.
run_script() {
    local file=$1
    shift
    if [ ! -f "$file" ]; then
        say "run.sh: no such script file: $file"
        return 1
    fi
    local status=0 limit=$TEST_TIMEOUT
    # A script that is long by design names its own limit (`# timeout: N`,
    # seconds): its hang is still caught, just later.
    local own
    own=$(sed -n 's/^# timeout: \([0-9][0-9]*\)$/\1/p' "$file" | head -n1)
    [ -n "$own" ] && [ "$own" -gt "$limit" ] && limit=$own
    boot_qemu "$KERNEL" "$limit" -initrd "$file" "$@" </dev/null || status=$?
    case $status in
        "$QEMU_SUCCESS") return 0 ;;
        124) say "run.sh: the kernel did not finish within ${limit}s" ;;
        "$QEMU_FAILURE") ;;
        *) say "run.sh: QEMU exited with status $status (a triple fault or a QEMU error)" ;;
    esac
    return 1
}

# interactive [QEMU ARGS...]
interactive() {
    local args
    mapfile -t args < <(qemu_args "$KERNEL")
    say "run.sh: booting Faultline; type 'help', 'halt' to power off, Ctrl-A X to quit QEMU."
    local status=0
    "$QEMU" "${args[@]}" -serial mon:stdio "$@" || status=$?
    [ "$status" = "$QEMU_SUCCESS" ]
}

# debug [QEMU ARGS...]
debug() {
    local args
    mapfile -t args < <(qemu_args "$KERNEL")
    say "run.sh: QEMU is waiting for gdb on localhost:1234. In another terminal:"
    say "    gdb $KERNEL -ex 'target remote localhost:1234'"
    "$QEMU" "${args[@]}" -serial mon:stdio -s -S "$@"
}

# Benchmarks run the release profile: the figures are set beside Linux's
# optimised build, and the debug kernel (opt-level 1, debug assertions)
# would measure the checks, not the kernel.
RELEASE_KERNEL=target/$TARGET/release/faultline

bench() {
    local out
    out=$(mktemp)
    local status=0
    cargo build --quiet --release --target "$TARGET" -p faultline-boot --bin faultline || return 1
    # -icount shift=0: one instruction per virtual nanosecond, and the TSC
    # follows virtual time, so the figures repeat exactly.
    boot_qemu "$RELEASE_KERNEL" 300 -icount shift=0 -initrd scripts/bench.fl </dev/null >"$out" 2>&1 || status=$?
    if [ "$status" != "$QEMU_SUCCESS" ]; then
        cat "$out" >&2
        say "run.sh: the benchmark kernel failed (status $status)"
        rm -f "$out"
        return 1
    fi
    grep -Eo '^[a-z0-9_]+_(instructions|cycles)=[0-9]+' "$out"
    rm -f "$out"
    linux_bench
}

# --- programs from outside the image (--program) -----------------------------

# QEMU's PVH loader passes one module, the -initrd file. To bring programs
# along, run.sh packs the console script and the programs into one cpio
# "newc" archive (the format of Linux's initramfs): script.fl, a directory
# bin and bin/NAME for each program, NAME its file's base name. The kernel
# tells it from a plain script by its magic number (kernel/src/initrd/).

# ensure_command COMMAND PACKAGE...: COMMAND, installed with apt-get (as
# root on Debian) when missing, or a message that says what to install.
ensure_command() {
    local cmd=$1
    shift
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "run.sh: installing $* with apt-get"
        if DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2; then
            command -v "$cmd" >/dev/null 2>&1 && return 0
        fi
    fi
    say "run.sh: $cmd is missing and could not be installed automatically."
    say "        Install it by hand, e.g. on Debian/Ubuntu:"
    say "            sudo apt-get update && sudo apt-get install -y $*"
    return 1
}

# pack_archive OUT SCRIPT [PROGRAM...]: writes the archive to OUT; SCRIPT
# may be "" (no script.fl: the console is then interactive). Fields are
# fixed (uid 0, mtime 0) so the same inputs give the same bytes.
pack_archive() {
    ensure_command python3 python3 || return 1
    python3 - "$@" <<'PYTHON'
import os, sys

out, script, programs = sys.argv[1], sys.argv[2], sys.argv[3:]
entries = []
if script:
    with open(script, "rb") as f:
        entries.append(("script.fl", 0o100644, f.read()))
if programs:
    entries.append(("bin", 0o040755, b""))
for path in programs:
    with open(path, "rb") as f:
        entries.append(("bin/" + os.path.basename(path), 0o100755, f.read()))
entries.append(("TRAILER!!!", 0, b""))

archive = bytearray()
def pad():
    archive.extend(b"\0" * (-len(archive) % 4))
for ino, (name, mode, data) in enumerate(entries, 1):
    name = name.encode() + b"\0"
    # ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor
    # rdevminor namesize check
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name), 0)
    archive += b"070701" + b"".join(b"%08X" % v for v in fields) + name
    pad()
    archive += data
    pad()
with open(out, "wb") as f:
    f.write(archive)
PYTHON
}

# check_program_files PATH...: each an existing file, no two with the same
# base name (the kernel would refuse the whole archive; better said here).
check_program_files() {
    local path name
    local -A seen=()
    for path in "$@"; do
        if [ ! -f "$path" ]; then
            say "run.sh: no such program file: $path"
            return 1
        fi
        name=$(basename "$path")
        if [ -n "${seen[$name]:-}" ]; then
            say "run.sh: --program ${seen[$name]} and --program $path are both named '$name'"
            return 1
        fi
        seen[$name]=$path
    done
}

# make_boot_module SCRIPT [PROGRAM...]: sets BOOT_MODULE to what QEMU is
# to pass as module 0: SCRIPT itself when there are no programs (a plain
# --script run stays what it always was), otherwise an archive of SCRIPT
# (if not "") and the programs, removed when run.sh exits. MODULE_ARGS
# are the QEMU flags that pass it (none when there is nothing to pass).
BOOT_MODULE=""
MODULE_ARGS=()
make_boot_module() {
    local script=$1
    shift
    if [ -n "$script" ] && [ ! -f "$script" ]; then
        say "run.sh: no such script file: $script"
        return 1
    fi
    if [ $# = 0 ]; then
        BOOT_MODULE=$script
        [ -z "$script" ] || MODULE_ARGS=(-initrd "$script")
        return 0
    fi
    check_program_files "$@" || return 1
    mkdir -p target
    BOOT_MODULE=$(mktemp target/boot-module-XXXXXX.cpio)
    trap 'rm -f "$BOOT_MODULE"' EXIT
    MODULE_ARGS=(-initrd "$BOOT_MODULE")
    pack_archive "$BOOT_MODULE" "$script" "$@"
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

# Linux as the oracle: linux_tests, linux_bench, compare_with_faultline, skip.
# shellcheck source=tests/linux/oracle.sh
source tests/linux/oracle.sh

# host_test_run CARGO_TEST_ARGS...: `cargo test --no-fail-fast` with those
# arguments, judged from its whole output and its exit status. Sets
# HOST_PASSED (tests counted by a "test result:" line), HOST_BINARIES (test
# binaries cargo ran) and HOST_FAILURES ("name|why" each). A binary that
# dies (abort, stack overflow, a signal) prints no "test result:" line, so
# it is a failure named after the binary; a non-zero cargo status that no
# such failure explains (a build error, say) is one more.
HOST_PASSED=0
HOST_BINARIES=0
HOST_FAILURES=()
host_test_run() {
    local log status=0
    log=$(mktemp)
    cargo test --no-fail-fast "$@" >"$log" 2>&1 || status=$?
    HOST_PASSED=0
    HOST_BINARIES=0
    HOST_FAILURES=()
    # State of the binary being read: its name, how many tests it started,
    # its counts once "test result:" arrives, the tests it reported FAILED,
    # why each did, and what cargo said about its exit.
    local bin="" started="" counted="" passed=0 failed=0 rerun="" died="" last_words=""
    local -a failed_tests=()
    local -A panic_of=()
    local line panicking="" message_of=""
    host_finish_binary() {
        [ -n "$bin" ] || return 0
        HOST_BINARIES=$((HOST_BINARIES + 1))
        local hint="" t why
        [ -z "$rerun" ] || hint="; rerun: cargo test $rerun"
        if [ -z "$counted" ]; then
            why=${died:+died ($died)}
            why=${why:-printed no test result}
            [ -z "$last_words" ] || why+=", $last_words"
            [ -z "$started" ] || why+=", $started started, none counted"
            HOST_FAILURES+=("$bin|$why$hint")
        else
            HOST_PASSED=$((HOST_PASSED + passed))
            for t in "${failed_tests[@]}"; do
                HOST_FAILURES+=("$bin::$t|${panic_of[$t]:-failed}$hint")
            done
            if [ "$failed" -gt "${#failed_tests[@]}" ]; then
                HOST_FAILURES+=("$bin|$((failed - ${#failed_tests[@]})) failures not named$hint")
            elif [ "$failed" = 0 ] && [ -n "$rerun$died" ]; then
                HOST_FAILURES+=("$bin|every test passed, but the binary failed${died:+ ($died)}$hint")
            fi
        fi
        bin="" started="" counted="" passed=0 failed=0 rerun="" died="" last_words=""
        failed_tests=()
        panic_of=()
    }
    while IFS= read -r line; do
        if [[ $line =~ ^\ *Running\ (.+)\ \((.+)\)$ ]]; then
            host_finish_binary
            local exe=${BASH_REMATCH[2]##*/}
            bin="${exe%-*} ${BASH_REMATCH[1]}"
        elif [[ $line =~ ^\ *Doc-tests\ (.+)$ ]]; then
            host_finish_binary
            bin="${BASH_REMATCH[1]} doc-tests"
        elif [[ $line =~ ^running\ ([0-9]+)\ tests?$ ]]; then
            started=${BASH_REMATCH[1]}
        elif [[ $line =~ ^test\ result:\ [A-Za-z]+\.\ ([0-9]+)\ passed\;\ ([0-9]+)\ failed\; ]]; then
            counted=yes passed=${BASH_REMATCH[1]} failed=${BASH_REMATCH[2]}
        elif [[ $line =~ ^test\ (.+)\ \.\.\.\ FAILED$ ]]; then
            failed_tests+=("${BASH_REMATCH[1]}")
        elif [[ $line =~ ^----\ (.+)\ stdout\ ----$ ]]; then
            panicking=${BASH_REMATCH[1]}
        elif [[ $line =~ ^thread\ .*\ panicked\ at\ (.+):$ ]] && [ -n "$panicking" ]; then
            panic_of[$panicking]="panicked at ${BASH_REMATCH[1]}:"
            message_of=$panicking
            panicking=""
        elif [ -n "$message_of" ]; then
            # The message runs up to the backtrace or a blank line.
            if [ -z "$line" ] || [[ $line =~ ^(stack\ backtrace:|note:\ ) ]]; then
                message_of=""
            else
                local trimmed=${line#"${line%%[! ]*}"}
                if [[ ${panic_of[$message_of]} == *: ]]; then
                    panic_of[$message_of]+=" $trimmed"
                else
                    panic_of[$message_of]+=", $trimmed"
                fi
            fi
        elif [[ $line =~ ^thread\ \'([^\']+)\'.*has\ overflowed\ its\ stack ]]; then
            last_words="stack overflow in '${BASH_REMATCH[1]}'"
        elif [[ $line =~ ^error:\ test\ failed,\ to\ rerun\ pass\ \`(.+)\`$ ]]; then
            rerun=${BASH_REMATCH[1]}
        elif [[ $line =~ ^\ *process\ didn.t\ exit\ successfully:\ .*\ \((.+)\)$ ]]; then
            died=${BASH_REMATCH[1]}
        fi
    done <"$log"
    host_finish_binary
    unset -f host_finish_binary
    if [ "$status" != 0 ] && [ "${#HOST_FAILURES[@]}" = 0 ]; then
        HOST_FAILURES+=("cargo test|exited with status $status and no test binary failed (a build error?)")
    elif [ "$status" = 0 ] && [ "$HOST_BINARIES" = 0 ]; then
        HOST_FAILURES+=("cargo test|ran no test binary")
    fi
    if [ "${#HOST_FAILURES[@]}" != 0 ]; then
        # The lines that say what went wrong, without the backtraces.
        grep -vE '^ +([0-9]+: |at )' "$log" | sed 's/^/    /' || true
    fi
    rm -f "$log"
}

host_tests() {
    echo "== host unit tests (cargo test -p faultline-abi -p faultline-kernel -p faultline-arch)"
    host_test_run -p faultline-abi -p faultline-kernel -p faultline-arch
    PASSED=$((PASSED + HOST_PASSED))
    local f name why
    for f in "${HOST_FAILURES[@]}"; do
        IFS='|' read -r name why <<<"$f"
        fail "host:$name" "$why"
    done
    echo "host: $HOST_PASSED passed in $HOST_BINARIES test binaries, ${#HOST_FAILURES[@]} failed"
}

# The probe crate fails in every way a host test can: an abort, an assertion,
# a stack overflow and a segfault, one binary each, and passes one test.
# host_test_run must name each failure and count only the one pass.
HOST_SELFTEST_EXPECTED="harness_probe unittests src/lib.rs|died (signal: 6, SIGABRT
fails tests/fails.rs::fails|panicked at tests/fails.rs
overflow tests/overflow.rs|died (signal: 6, SIGABRT: process abort signal), stack overflow in 'overflows'
segv tests/segv.rs|died (signal: 11, SIGSEGV"

host_selftest() {
    CARGO_TARGET_DIR=$PWD/target/harness-probe host_test_run \
        --manifest-path tests/harness-probe/Cargo.toml >/dev/null
    local got expected i ok=yes
    mapfile -t expected <<<"$HOST_SELFTEST_EXPECTED"
    [ "$HOST_PASSED" = 1 ] && [ "$HOST_BINARIES" = 4 ] &&
        [ "${#HOST_FAILURES[@]}" = "${#expected[@]}" ] || ok=""
    for i in "${!expected[@]}"; do
        [[ ${HOST_FAILURES[$i]:-} == "${expected[$i]}"* ]] || ok=""
    done
    if [ -n "$ok" ]; then
        pass "host_selftest (abort, assertion, stack overflow and segfault each named)"
    else
        got=$(printf '%s; ' "${HOST_FAILURES[@]}")
        fail "host_selftest" "passed=$HOST_PASSED binaries=$HOST_BINARIES failures: $got"
    fi
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
# must contain every line of the expected text (each a fixed string). The
# two overflows differ by where the overflowing stack was: a boot-stack
# overflow must not pass for a task-stack one, nor the other way round.
declare -A EXPECT_FAULT=(
    [page_fault]='cr2=0xdeadbeef000'
    [stack_overflow]='double_fault_stack=yes
rsp_in=kernel_image
cr2_in=kernel_image'
    [task_stack_overflow]='double_fault_stack=yes
rsp_in=task_stacks
cr2_in=task_stacks'
    [ap_fault]='fault on cpu=1 apic_id=1 others_stopped=1
EXCEPTION: page fault in kernel mode
cr2=0xdeadbeef000'
)

# Kernels built to panic, judged the same way with the panic report in place
# of the fault's: the lock-order checks of kernel::sync (docs/locking.md) on
# the booted kernel's own locks.
declare -A EXPECT_PANIC=(
    [lock_order]='KERNEL PANIC on cpu=0 apic_id=0 others_stopped=1
panicked at boot/src/heap.rs:
lock order: took heap (5) while holding serial (8)'
    [lock_in_interrupt]='KERNEL PANIC on cpu=1 apic_id=1 others_stopped=1
lock order: took procs (1) in interrupt context'
    [lock_env]="KERNEL PANIC on cpu=0
lock order: took the console's ENV with interrupts off"
)

# Test kernels that boot with another CPU count than the default: one on
# a single CPU (the uniprocessor path stays tested), smp with four (every
# CPU reports in, pings reach each of them).
declare -A KERNEL_CPUS=(
    [basics]=1
    [smp]=4
)

kernel_name() {
    basename "$1" | sed 's/-[0-9a-f]*$//'
}

# run_fault_kernel NAME ELF: NAME is in EXPECT_FAULT or EXPECT_PANIC.
run_fault_kernel() {
    local name=$1 elf=$2 out status=0 needle missing=""
    local report='EXCEPTION:' what=fault expected=${EXPECT_FAULT[$name]:-}
    if [ -n "${EXPECT_PANIC[$name]:-}" ]; then
        report='KERNEL PANIC' what=panic expected=${EXPECT_PANIC[$name]}
    fi
    out=$(mktemp)
    boot_qemu "$elf" "$TEST_TIMEOUT" </dev/null >"$out" 2>&1 || status=$?
    sed 's/^/    /' "$out"
    grep -q "$report" "$out" || missing+=" '$report'"
    while IFS= read -r needle; do
        grep -qF -- "$needle" "$out" || missing+=" '$needle'"
    done <<<"$expected"
    if [ "$status" = "$QEMU_FAILURE" ] && [ -z "$missing" ]; then
        pass "$name ($what reported, run counted as failed)"
    elif [ "$status" != "$QEMU_FAILURE" ]; then
        fail "$name" "status $status, wanted $QEMU_FAILURE${missing:+; report lacks$missing}"
    else
        fail "$name" "report lacks$missing"
    fi
    rm -f "$out"
}

# run_test_kernel NAME ELF TIMEOUT [CMDLINE]: TIMEOUT is per test (see
# boot_watched). The kernel runs its tests from
# index start=K and prints "test NAME ..." as each starts and "test NAME ...
# ok|FAILED" as it ends. After a panic, fault or hang the runner boots it
# again from the test after the one that failed. Only a boot that prints
# "test-kernel done" and exits with status 33 ends the run well; a kernel
# that dies in a test, between two tests or after its closing line leaves a
# named failure. Results go to RESULTS as "test|ok" or "test|FAILED|why";
# kernel output is indented.
RESULTS=()
run_test_kernel() {
    local name=$1 elf=$2 limit=$3 extra=${4:-} start=0 out status
    # Seen by qemu_args (dynamic scope); cpus= tells the kernel what to expect.
    local CPUS=${KERNEL_CPUS[$name]:-$CPUS}
    RESULTS=()
    out=$(mktemp)
    while :; do
        status=0
        boot_watched "$elf" "$limit" "$out" -append "start=$start cpus=$CPUS${extra:+ $extra}" || status=$?
        local results=0 oks=0 current="" last="" last_verdict="" from="" done_line="" line
        while IFS= read -r line; do
            line=${line%$'\r'}
            if [[ $line =~ ^test\ ([^ ]+)\ \.\.\.\ (ok|FAILED) ]]; then
                results=$((results + 1))
                current=""
                last=${BASH_REMATCH[1]} last_verdict=${BASH_REMATCH[2]}
                [ "$last_verdict" = ok ] && oks=$((oks + 1))
                RESULTS+=("$last|$last_verdict")
            elif [[ $line =~ ^test\ ([^ ]+)\ \.\.\.$ ]]; then
                current=${BASH_REMATCH[1]}
            else
                [[ $line =~ ^running\ [0-9]+\ tests\ from\ \#([0-9]+) ]] && from=${BASH_REMATCH[1]}
                [[ $line =~ ^test-kernel\ done ]] && done_line=$line
                printf '    %s\n' "$line"
            fi
        done <"$out"
        local death="kernel died, status $status"
        if [ "$status" = 124 ]; then
            death="timed out after ${limit}s"
            [ "$results$current" ] || death="timed out after ${TEST_TIMEOUT}s"
        fi
        if [ -n "$from" ] && [ "$from" != "$start" ]; then
            # Booting it again would run the same tests for ever.
            RESULTS+=("(start)|FAILED|asked to start at #$start, started at #$from")
            break
        fi
        if [ -n "$done_line" ]; then
            # The kernel counts its passes too: a result the runner missed
            # must not vanish silently.
            local claimed
            claimed=$(sed -n 's/^test-kernel done passed=\([0-9]*\).*/\1/p' <<<"$done_line")
            if [ "${claimed:-x}" != "$oks" ]; then
                RESULTS+=("(result count)|FAILED|kernel reported ${claimed:-no} passes, runner saw $oks")
            fi
            if [ "$status" != "$QEMU_SUCCESS" ]; then
                [ "$status" = 124 ] && death="hung (timed out after ${limit}s)" || death="exited with status $status"
                RESULTS+=("(exit)|FAILED|printed 'test-kernel done', then $death")
            fi
            break
        fi
        if [ -n "$current" ]; then
            # Started but never finished: a fault, a hang or a reboot.
            RESULTS+=("$current|FAILED|$death")
            results=$((results + 1))
        elif [ "$results" = 0 ]; then
            RESULTS+=("(boot)|FAILED|kernel died before its tests, $death")
            break
        elif [ "$last_verdict" = ok ]; then
            # No test was running: a death that belongs to no test, and the
            # next one never started.
            RESULTS+=("(after $last)|FAILED|$death between tests")
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

# The harness self-test kernel must produce exactly these results: by
# default, and with each after_done= way of ending badly after a good run.
# Its timeout counts from each test's start line (see boot_watched), not
# from the boot, so besides the two hangs it only has to cover a few trivial
# steps per test; the variants run in the background while the other
# kernels are tested.
SELFTEST_TIMEOUT=5
SELFTEST_EXPECTED="passes_first|ok
panics|FAILED
panics_on_another_cpu|FAILED
faults|FAILED|kernel died, status $QEMU_FAILURE
hangs|FAILED|timed out after ${SELFTEST_TIMEOUT}s
dies_after_its_ok_line|ok
(after dies_after_its_ok_line)|FAILED|kernel died, status $QEMU_FAILURE between tests
passes_last|ok"
declare -A SELFTEST_AFTER_DONE=(
    [fail]="exited with status $QEMU_FAILURE"
    [triple]="exited with status 0"
    [hang]="hung (timed out after ${SELFTEST_TIMEOUT}s)"
)
SELFTEST_DIR=""
SELFTEST_PIDS=()

# start_selftest_kernel ELF: each variant in a shell of its own, in the
# background; finish_selftest_kernel waits for them and judges the results.
start_selftest_kernel() {
    local elf=$1 how
    SELFTEST_DIR=$(mktemp -d)
    (
        run_test_kernel harness_selftest "$elf" "$SELFTEST_TIMEOUT" >"$SELFTEST_DIR/default.log"
        printf '%s\n' "${RESULTS[@]}" >"$SELFTEST_DIR/default"
    ) &
    SELFTEST_PIDS=($!)
    for how in "${!SELFTEST_AFTER_DONE[@]}"; do
        (
            run_test_kernel harness_selftest "$elf" "$SELFTEST_TIMEOUT" "after_done=$how" >"$SELFTEST_DIR/$how.log"
            printf '%s\n' "${RESULTS[@]}" >"$SELFTEST_DIR/$how"
        ) &
        SELFTEST_PIDS+=($!)
    done
}

finish_selftest_kernel() {
    local dir=$SELFTEST_DIR how got
    [ -n "$dir" ] || return 0
    wait "${SELFTEST_PIDS[@]}" || true
    got=$(cat "$dir/default" 2>/dev/null || true)
    # The panic on CPU 1 stopped the bootstrap CPU and named CPU 1.
    if ! grep -q 'KERNEL PANIC on cpu=1 apic_id=1 others_stopped=1: ' "$dir/default.log"; then
        got+="; no 'KERNEL PANIC on cpu=1 apic_id=1 others_stopped=1' report"
    fi
    if [ "$got" = "$SELFTEST_EXPECTED" ]; then
        pass "harness_selftest (panic, fault, hang and a death between tests reported by name; later tests still ran)"
    else
        sed 's/^/    /' "$dir/default.log"
        fail "harness_selftest" "got: $(tr '\n' ';' <<<"$got")"
    fi
    for how in "${!SELFTEST_AFTER_DONE[@]}"; do
        got=$(cat "$dir/$how" 2>/dev/null || true)
        if [ "$got" = "passes_first|ok
(exit)|FAILED|printed 'test-kernel done', then ${SELFTEST_AFTER_DONE[$how]}" ]; then
            pass "harness_selftest:after_done=$how (a bad exit after the closing line is a failure)"
        else
            sed 's/^/    /' "$dir/$how.log"
            fail "harness_selftest:after_done=$how" "got: $(tr '\n' ';' <<<"$got")"
        fi
    done
    rm -rf "$dir"
    SELFTEST_DIR=""
}

# Every kernel in tests/kernels/ must have been built (a file without its
# [[test]] entry would never run), and so must those the self-tests need.
check_kernels_built() {
    local kernels=$1 f name built
    built=$(for f in $kernels; do kernel_name "$f"; done)
    for f in tests/kernels/*.rs; do
        name=$(basename "$f" .rs)
        grep -qx "$name" <<<"$built" || fail "kernel:$name" "tests/kernels/$name.rs was not built (no [[test]] entry in tests/Cargo.toml?)"
    done
    for name in harness_selftest page_fault "${!EXPECT_FAULT[@]}" "${!EXPECT_PANIC[@]}"; do
        [ ! -f "tests/kernels/$name.rs" ] || continue
        grep -qx "$name" <<<"$built" || fail "kernel:$name" "the runner needs this test kernel and it has no file in tests/kernels/"
    done
}

# must_fail_script FILE: whether FILE made the kernel fail for the reason
# it names. A script under tests/scripts/fail/ names its expected failure in
# lines "# expect-failure: TEXT"; the run must end with the failure status,
# the kernel's closing "result=FAILED" line and every TEXT in the output, so
# a kernel that died or never booted does not pass for a failing script.
# Sets WHY when it returns non-zero; the output is in $SCRIPT_OUT.
WHY=""
SCRIPT_OUT=""
must_fail_script() {
    local file=$1 status=0 expected text missing=""
    WHY=""
    expected=$(sed -n 's/^# expect-failure: *//p' "$file")
    if [ -z "$expected" ]; then
        WHY="no '# expect-failure: TEXT' line says how it must fail"
        return 1
    fi
    run_script "$file" >"$SCRIPT_OUT" 2>&1 || status=$?
    if [ "$status" = 0 ]; then
        WHY="it succeeded"
        return 1
    fi
    grep -qE '^script commands=[0-9]+ failures=[1-9][0-9]* result=FAILED' "$SCRIPT_OUT" ||
        missing+=" 'result=FAILED'"
    while IFS= read -r text; do
        grep -qF -- "$text" "$SCRIPT_OUT" || missing+=" '$text'"
    done <<<"$expected"
    if [ -n "$missing" ]; then
        WHY="it failed, but the output lacks$missing"
        return 1
    fi
}

# Console scripts run by the real kernel: tests/scripts/*.fl must succeed,
# tests/scripts/fail/*.fl must make the kernel fail as they say.
script_tests() {
    local f
    SCRIPT_OUT=$(mktemp)
    for f in tests/scripts/*.fl; do
        if run_script "$f" >"$SCRIPT_OUT" 2>&1; then pass "script:$(basename "$f")"; else sed 's/^/    /' "$SCRIPT_OUT"; fail "script:$(basename "$f")"; fi
    done
    for f in tests/scripts/fail/*.fl; do
        if must_fail_script "$f"; then
            pass "script-must-fail:$(basename "$f")"
        else
            sed 's/^/    /' "$SCRIPT_OUT"
            fail "script-must-fail:$(basename "$f")" "$WHY"
        fi
    done
    rm -f "$SCRIPT_OUT"
}

# must_fail_script must refuse a script without an expect-failure line, one
# that fails for another reason than it names, and a failing script run by
# a kernel that dies at boot with the very status a failed script gives
# (the page_fault test kernel, FAULT_ELF).
script_selftest() {
    local fault_elf=$1 dir ok=yes got=""
    dir=$(mktemp -d)
    SCRIPT_OUT=$(mktemp)
    printf '# Fails, but says not how.\nno_such_command\n' >"$dir/unnamed.fl"
    printf '# expect-failure: expect FAILED: frames_free=\nno_such_command\n' >"$dir/wrong_reason.fl"
    must_fail_script "$dir/unnamed.fl" && ok=""
    got+="unnamed: ${WHY:-accepted}; "
    [[ $WHY == *"expect-failure"* ]] || ok=""
    must_fail_script "$dir/wrong_reason.fl" && ok=""
    got+="wrong_reason: ${WHY:-accepted}; "
    [[ $WHY == *"lacks 'expect FAILED: frames_free='" ]] || ok=""
    if [ -n "$fault_elf" ]; then
        local KERNEL=$fault_elf
        must_fail_script tests/scripts/fail/expect_fails.fl && ok=""
        got+="dead kernel: ${WHY:-accepted}"
        [[ $WHY == *"lacks 'result=FAILED'"* ]] || ok=""
    else
        got+="dead kernel: no page_fault kernel was built" ok=""
    fi
    if [ -n "$ok" ]; then
        pass "script_selftest (must-fail scripts refused when unnamed, failing for another reason, or run by a dead kernel)"
    else
        fail "script_selftest" "$got"
    fi
    rm -rf "$dir" "$SCRIPT_OUT"
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
        grep -q 'killed by SIGINT signal=2 wait_status=0x2' "$out"; then
        pass "console:interactive_bad_input_then_halt"
    else
        sed 's/^/    /' "$out"
        fail "console:interactive_bad_input_then_halt" "status $status"
    fi
    rm -f "$out"
}

# --cpus N is QEMU's -smp N, which the kernel finds in the MADT: one CPU
# (the uniprocessor path), three (an odd count), and a refused count.
cpus_tests() {
    run_sh_test cli_cpus_1 0 'cpus_online=1 ' ./run.sh --cpus 1 --script tests/scripts/cpu.fl
    run_sh_test cli_cpus_3 0 'ipi_answered=2 ipi_broadcast_answered=2' \
        ./run.sh --cpus 3 --script tests/scripts/cpu.fl
    run_sh_test cli_cpus_refused 2 'usage: ./run.sh --cpus N (N from 1 to 64)' ./run.sh --cpus 0
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

# Programs from outside the image. build_test_programs DIR builds the C
# programs of tests/programs/ into DIR, and the bad modules made from them.
# The good one makes one system call, exit, whose number is read from
# abi/src/lib.rs: the test follows the ABI as its numbering changes.
TEST_PROGRAMS=target/test-programs
build_test_programs() {
    local dir=$1 src=tests/programs nr
    nr=$(sed -n 's/^ *pub const EXIT: u64 = \([0-9][0-9]*\);.*/\1/p' abi/src/lib.rs)
    if [ -z "$nr" ]; then
        say "run.sh: no line 'pub const EXIT: u64 = N;' in abi/src/lib.rs"
        return 1
    fi
    # libc6-dev: the dynamic test program links the C library.
    ensure_command gcc gcc libc6-dev || return 1
    rm -rf "$dir"
    mkdir -p "$dir/clash"
    gcc -static -nostdlib -ffreestanding -fno-pie -no-pie -fno-stack-protector -O2 \
        -Wall -Wextra -Werror -DNR_EXIT="$nr" -Wl,--build-id=none \
        -o "$dir/hello_c" "$src/start.S" "$src/hello_c.c" || return 1
    # Plain gcc makes a position-independent ET_DYN; -no-pie an ET_EXEC
    # that still asks for the dynamic linker. Both need PT_INTERP.
    gcc -O2 -o "$dir/dynamic" "$src/dynamic.c" || return 1
    gcc -O2 -no-pie -o "$dir/dynamic-nopie" "$src/dynamic.c" || return 1
    cp "$src/hello_c.c" "$dir/notelf"
    cp "$dir/hello_c" "$dir/wrongmach"
    # e_machine, two bytes at offset 18: 183, EM_AARCH64.
    printf '\267\000' | dd of="$dir/wrongmach" bs=1 seek=18 conv=notrunc status=none
    # Ends inside the program-header table.
    head -c 200 "$dir/hello_c" >"$dir/truncated"
    : >"$dir/empty"
    # A module with a built-in program's name.
    cp "$dir/hello_c" "$dir/clash/hello"
}

# C programs built with a C library: tests/musl/NAME.c by `musl-gcc
# -static` (Debian's musl-tools), as README.md shows, each the program
# musl_NAME (NAME alone may be a built-in's: hello). program_tests runs
# each on Faultline with the console script tests/musl/NAME.fl, and the
# oracle compares each with Linux (tests/linux/oracle.sh).
musl_programs() {
    local f
    for f in tests/musl/*.c; do
        printf 'musl_%s\n' "$(basename "$f" .c)"
    done
}

# build_musl_programs DIR: every one of musl_programs into DIR.
build_musl_programs() {
    local dir=$1 name status=0
    ensure_command musl-gcc musl-tools || return 1
    mkdir -p "$dir"
    for name in $(musl_programs); do
        musl-gcc -static -O2 -std=gnu11 -Wall -Wextra -Werror -Wl,--build-id=none \
            -o "$dir/$name" "tests/musl/${name#musl_}.c" || status=1
    done
    return "$status"
}

# archive_script_test NAME SCRIPT PROGRAM...: boots an archive of SCRIPT
# and the programs; the script's "# expect-result: LINE" names the closing
# line (and so whether the run must succeed), each "# expect-output: TEXT"
# a fixed string the output must contain.
archive_script_test() {
    local name=$1 script=$2 archive out status=0 result text missing="" want
    shift 2
    archive=$TEST_PROGRAMS/$name.cpio
    out=$(mktemp)
    if ! pack_archive "$archive" "$script" "$@"; then
        fail "programs:$name" "packing the archive failed"
        rm -f "$out"
        return
    fi
    result=$(sed -n 's/^# expect-result: *//p' "$script")
    run_script "$archive" >"$out" 2>&1 || status=$?
    want=1
    [[ $result == *"result=ok" ]] && want=0
    [ "$status" = "$want" ] || missing+=" exit status $want (got $status)"
    grep -qxF -- "$result" <(tr -d '\r' <"$out") || missing+=" '$result'"
    while IFS= read -r text; do
        grep -qF -- "$text" "$out" || missing+=" '$text'"
    done < <(sed -n 's/^# expect-output: *//p' "$script")
    if [ -z "$result" ]; then
        fail "programs:$name" "$script has no '# expect-result: LINE'"
    elif [ -z "$missing" ]; then
        pass "programs:$name"
    else
        sed 's/^/    /' "$out"
        fail "programs:$name" "the run lacks$missing"
    fi
    rm -f "$out"
}

# run_sh_test NAME WANT_STATUS TEXT ./run.sh ARGS...: this very script, run
# with ARGS and no terminal, must exit WANT_STATUS and print TEXT.
run_sh_test() {
    local name=$1 want=$2 text=$3 out status=0
    shift 3
    out=$(mktemp)
    "$@" </dev/null >"$out" 2>&1 || status=$?
    if [ "$status" = "$want" ] && grep -qF -- "$text" "$out"; then
        pass "programs:$name"
    else
        sed 's/^/    /' "$out"
        fail "programs:$name" "status $status (wanted $want), output should contain '$text'"
    fi
    rm -f "$out"
}

program_tests() {
    local dir=$TEST_PROGRAMS out status=0 name
    if ! build_test_programs "$dir"; then
        fail "programs:build" "building tests/programs/ into $dir failed, see above"
        return
    fi
    archive_script_test module_programs_run tests/programs/good.fl "$dir/hello_c" "$dir/clash/hello"
    archive_script_test bad_modules_refused_at_run tests/programs/bad.fl "$dir/notelf" \
        "$dir/wrongmach" "$dir/dynamic" "$dir/dynamic-nopie" "$dir/truncated" \
        "$dir/empty" "$dir/hello_c"
    # Cut in the middle of hello_c's data (the last entry before the
    # 124-byte trailer): refused whole, nothing run, and the kernel powers
    # off with the failure status rather than wait at a console.
    out=$(mktemp)
    pack_archive "$dir/whole.cpio" tests/programs/good.fl "$dir/hello_c"
    head -c $(($(stat -c %s "$dir/whole.cpio") - 400)) "$dir/whole.cpio" >"$dir/cut.cpio"
    boot_qemu "$KERNEL" "$TEST_TIMEOUT" -initrd "$dir/cut.cpio" </dev/null >"$out" 2>&1 || status=$?
    if [ "$status" = "$QEMU_FAILURE" ] && grep -qF "error: boot module 0 is a malformed cpio archive, refused: truncated: entry 'bin/hello_c'" "$out" &&
        ! grep -q '^script commands=' "$out"; then
        pass "programs:malformed_archive_refused_whole"
    else
        sed 's/^/    /' "$out"
        fail "programs:malformed_archive_refused_whole" "status $status"
    fi
    rm -f "$out"
    # An archive without script.fl: the interactive console, with the
    # program there (what ./run.sh --program PATH gives on a terminal).
    out=$(mktemp)
    status=0
    pack_archive "$dir/noscript.cpio" "" "$dir/hello_c"
    # spawn and wait, not run: run drops the keys typed while it waits.
    printf '\nprograms\nspawn hello_c 9\nwait $tid\nexpect exit_status == 9\nhalt\n' |
        boot_qemu "$KERNEL" "$TEST_TIMEOUT" -initrd "$dir/noscript.cpio" >"$out" 2>&1 || status=$?
    if [ "$status" = "$QEMU_SUCCESS" ] && grep -q 'boot archive: script=no programs=1' "$out" &&
        grep -q 'faultline> ' "$out" && grep -q 'hello_c module size=' "$out" &&
        grep -q 'expect exit_status == 9: ok' "$out"; then
        pass "programs:interactive_console_with_module_program"
    else
        sed 's/^/    /' "$out"
        fail "programs:interactive_console_with_module_program" "status $status"
    fi
    rm -f "$out"
    # The command line: --program with --script, with the demo, and the
    # mistakes run.sh catches before booting.
    run_sh_test cli_program_with_script 0 'result=ok' \
        ./run.sh --program "$dir/hello_c" --script tests/programs/good.fl
    run_sh_test cli_program_with_demo 0 'boot archive: script=yes programs=1 skipped=0' \
        ./run.sh --program "$dir/hello_c"
    run_sh_test cli_same_name_twice 1 "are both named 'hello'" \
        ./run.sh --program "$dir/clash/hello" --program "$dir/clash/hello" --script tests/programs/good.fl
    run_sh_test cli_missing_program 1 "no such program file: $dir/nonexistent" \
        ./run.sh --program "$dir/nonexistent"
    # bench, not test: were the check broken, test would run itself again.
    run_sh_test cli_program_with_bench 2 "'bench' takes no --script or --program" \
        ./run.sh bench --program "$dir/hello_c"
    # The fuzz command reaches fuzz() with its options (it once stopped at
    # the argument loop); --calls 0 is refused there, before any boot.
    run_sh_test cli_fuzz_options 2 "usage: ./run.sh fuzz" ./run.sh fuzz --calls 0
    # Programs built with a C library, musl, and run unchanged.
    if build_musl_programs "$dir"; then
        for name in $(musl_programs); do
            archive_script_test "$name" "tests/musl/${name#musl_}.fl" "$dir/$name"
        done
    else
        fail "programs:musl_build" "musl-gcc could not build tests/musl/ into $dir, see above"
    fi
}

# faultline_bench_output ELF OUT: the same benchmark binary Linux ran,
# on Faultline's release build under -icount shift=0; OUT gets its
# NAME=cycles lines (docs/oracle.md, "Benchmarks").
faultline_bench_output() {
    local elf=$1 out=$2 dir status=0
    dir=$(mktemp -d target/oracle-bench-XXXXXX)
    cp "$elf" "$dir/bench"
    printf 'run bench\n' >"$dir/script.fl"
    pack_archive "$dir/module.cpio" "$dir/script.fl" "$dir/bench" || status=1
    if [ "$status" = 0 ]; then
        boot_qemu "$RELEASE_KERNEL" 600 -icount shift=0 -initrd "$dir/module.cpio" </dev/null \
            >"$dir/serial.log" 2>&1 || status=$?
    fi
    tr -d '\r' <"$dir/serial.log" | grep -E '^[a-z0-9_]+=[0-9]+$' | grep -v '^checks_failed=' >"$out" || true
    if [ "$status" != "$QEMU_SUCCESS" ] || [ ! -s "$out" ]; then
        sed 's/^/    /' "$dir/serial.log" >&2
        rm -rf "$dir"
        return 1
    fi
    rm -rf "$dir"
}

# faultline_program_output NAME ELF OUT: the oracle's Faultline side
# (docs/oracle.md): ELF run as `NAME a b` with ORACLE=1 in its environment,
# as tests/linux/init.c runs it on Linux; OUT gets the program's key=value
# lines and the status line. Non-zero only when Faultline could not run it.
faultline_program_output() {
    local name=$1 elf=$2 out=$3 dir status=0 code
    dir=$(mktemp -d target/oracle-faultline-XXXXXX)
    cp "$elf" "$dir/$name"
    printf 'env ORACLE=1\nrun %s a b\n' "$name" >"$dir/script.fl"
    pack_archive "$dir/module.cpio" "$dir/script.fl" "$dir/$name" || status=1
    if [ "$status" = 0 ]; then
        boot_qemu "$KERNEL" "$TEST_TIMEOUT" -initrd "$dir/module.cpio" </dev/null \
            >"$dir/serial.log" 2>&1 || status=$?
    fi
    tr -d '\r' <"$dir/serial.log" >"$dir/log" 2>/dev/null || true
    # "exited exit_status=N" or "killed by SIG... signal=N ...", as
    # /init's "status=N" or "status=signal:N".
    code=$(sed -n -e 's/^task [0-9]* exited exit_status=\(-\{0,1\}[0-9]*\)$/\1/p' \
        -e 's/^task [0-9]* killed by .* signal=\([0-9]*\) .*$/signal:\1/p' "$dir/log" | tail -1)
    grep -E '^[A-Za-z0-9_.]+=' "$dir/log" >"$out" || true
    # A built-in of the same name would have run instead (never shadowed).
    if [ -z "$code" ] || grep -qF "refused, '$name' is the name of a built-in program" "$dir/log"; then
        sed 's/^/    /' "$dir/log" >&2
        rm -rf "$dir"
        return 1
    fi
    oracle_status_line "$name" "$code" >>"$out"
    rm -rf "$dir"
    # QEMU's status is the script's verdict (a failed `run` is in the log).
    [ "$status" = "$QEMU_SUCCESS" ] || [ "$status" = "$QEMU_FAILURE" ]
}

# lint_test NAME DIR COMMAND...: one named test, passing only if COMMAND
# (run in DIR) succeeds; its output is shown when it does not.
lint_test() {
    local name=$1 dir=$2 out status=0
    shift 2
    out=$(mktemp)
    (cd "$dir" && "$@") >"$out" 2>&1 || status=$?
    if [ "$status" = 0 ]; then
        pass "$name"
    else
        sed 's/^/    /' "$out"
        fail "$name" "'$*' in $dir exited with status $status"
    fi
    rm -f "$out"
}

# Warnings are errors: the lints that matter (undocumented unsafe blocks in
# arch and boot) are warnings until -D says otherwise. Every crate is linted
# where it is built: abi, kernel and arch with their host tests, everything
# for the bare-metal target, the test kernels, the user workspace (from its
# own directory, whose .cargo/config.toml holds its flags) and the probe.
lint_tests() {
    echo "== lints"
    lint_test "fmt:workspace" . cargo fmt --check
    lint_test "fmt:user" user cargo fmt --check
    lint_test "fmt:harness-probe" tests/harness-probe cargo fmt --check
    lint_test "clippy:host" . cargo clippy --quiet -p faultline-abi -p faultline-kernel \
        -p faultline-arch --all-targets -- -D warnings
    lint_test "clippy:$TARGET" . cargo clippy --quiet --target "$TARGET" --workspace \
        --lib --bins -- -D warnings
    lint_test "clippy:test-kernels" . cargo clippy --quiet --target "$TARGET" \
        -p faultline-tests --tests -- -D warnings
    lint_test "clippy:user" user cargo clippy --quiet --workspace -- -D warnings
    lint_test "clippy:harness-probe" tests/harness-probe env CARGO_TARGET_DIR="$PWD/target/harness-probe" \
        cargo clippy --quiet --all-targets -- -D warnings
}

run_tests() {
    local begin=$SECONDS
    host_tests
    host_selftest
    lint_tests
    echo "== building kernels"
    local kernels=""
    if ! build_kernel || ! kernels=$(test_kernels); then
        fail "kernel build" "see the compiler errors above"
    fi
    echo "== in-QEMU test kernels"
    local elf name
    check_kernels_built "$kernels"
    for elf in $kernels; do
        [ "$(kernel_name "$elf")" != harness_selftest ] || start_selftest_kernel "$elf"
    done
    for elf in $kernels; do
        name=$(kernel_name "$elf")
        if [ -n "${EXPECT_FAULT[$name]:-}${EXPECT_PANIC[$name]:-}" ]; then
            run_fault_kernel "$name" "$elf"
        elif [ "$name" != harness_selftest ]; then
            run_test_kernel "$name" "$elf" "$TEST_TIMEOUT"
            report_results "$name"
        fi
    done
    echo "== console scripts"
    console_test
    script_tests
    cpus_tests
    script_selftest "$(grep -m1 '/page_fault-[0-9a-f]*$' <<<"$kernels" || true)"
    module_tests
    echo "== programs from outside the image"
    program_tests
    linux_tests
    finish_selftest_kernel
    echo "== done in $((SECONDS - begin))s"
    if [ "$FAILED" -gt 0 ]; then
        printf 'failed: %s\n' "${FAILED_NAMES[@]}"
    fi
    echo "$PASSED passed, $FAILED failed$([ "$SKIPPED" = 0 ] || echo ", $SKIPPED skipped")"
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
    usage="usage: ./run.sh fuzz [--calls N] [--seed S] [--switch stack-zero|trace]..."
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
        # The warm-up spawns over 4096 threads (tests/scripts/fuzz.fl says why).
        if [ "$round" = warm-up ]; then base=$((seed + 1000)) n=40000; else base=$seed n=$calls; fi
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
        echo "expect signal == 9"
        for i in 1 2 3; do
            echo "wait \$f$i"
            echo "expect exit_status == 0"
        done
        if [ "$round" = warm-up ]; then
            echo "mem"
            echo "let heap_pages \$heap_bytes / 4096"
            echo "let unowned_before \$frames_free + \$heap_pages"
            echo "let unowned_floor \$unowned_before - 10"
            echo "let heap_used_limit \$heap_used + 64K"
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
# Only the idle tasks (one per CPU) and the console remain.
ps
expect non_idle == 1
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

# A command word, and the options: --script FILE once, --program PATH any
# number of times; both go with the console and debug only.
COMMAND=""
SCRIPT=""
PROGRAMS=()
FUZZ_ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
        --script)
            [ $# -ge 2 ] || { say "usage: ./run.sh --script FILE"; exit 2; }
            [ -z "$SCRIPT" ] || { say "run.sh: only one --script"; exit 2; }
            SCRIPT=$2
            shift 2
            ;;
        --program)
            [ $# -ge 2 ] || { say "usage: ./run.sh --program PATH (one PATH each time)"; exit 2; }
            PROGRAMS+=("$2")
            shift 2
            ;;
        --cpus)
            # The kernel runs on at most 64 (kernel::sync::MAX_CPUS).
            if [ $# -lt 2 ] || ! [[ $2 =~ ^[1-9][0-9]*$ ]] || [ "$2" -gt 64 ]; then
                say "usage: ./run.sh --cpus N (N from 1 to 64)"
                exit 2
            fi
            CPUS=$2
            shift 2
            ;;
        fuzz)
            # Its own options follow it (fuzz() reads them).
            [ -z "$COMMAND" ] || { say "run.sh: '$COMMAND' and '$1' do not go together"; exit 2; }
            COMMAND=fuzz
            shift
            FUZZ_ARGS=("$@")
            break
            ;;
        test | debug | bench | -h | --help | help)
            [ -z "$COMMAND" ] || { say "run.sh: '$COMMAND' and '$1' do not go together"; exit 2; }
            COMMAND=$1
            shift
            ;;
        *)
            say "run.sh: unknown command '$1' (try ./run.sh help)"
            exit 2
            ;;
    esac
done
case $COMMAND in
    "" | debug) ;;
    *)
        if [ -n "$SCRIPT" ] || [ "${#PROGRAMS[@]}" != 0 ]; then
            say "run.sh: '$COMMAND' takes no --script or --program"
            exit 2
        fi
        ;;
esac

case $COMMAND in
    "")
        ensure_tools
        build_kernel
        if [ -n "$SCRIPT" ] || [ ! -t 0 ]; then
            make_boot_module "${SCRIPT:-scripts/demo.fl}" "${PROGRAMS[@]}"
            run_script "$BOOT_MODULE"
        else
            make_boot_module "" "${PROGRAMS[@]}"
            interactive "${MODULE_ARGS[@]}"
        fi
        ;;
    test)
        ensure_tools
        run_tests
        ;;
    debug)
        ensure_tools
        build_kernel
        make_boot_module "$SCRIPT" "${PROGRAMS[@]}"
        debug "${MODULE_ARGS[@]}"
        ;;
    bench)
        ensure_tools
        build_kernel
        bench
        ;;
    fuzz)
        ensure_tools
        build_kernel
        fuzz "${FUZZ_ARGS[@]}"
        ;;
    -h | --help | help)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    *)
        say "run.sh: unknown command '$1' (try ./run.sh help)"
        exit 2
        ;;
esac
