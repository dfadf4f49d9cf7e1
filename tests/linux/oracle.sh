# tests/linux/oracle.sh: Linux as the oracle. Sourced by run.sh, which
# provides say, pass, fail, QEMU, MEMORY, musl_programs and
# build_musl_programs. See docs/oracle.md.
#
# The C programs in tests/linux/ are built freestanding (no libc), those
# in tests/musl/ with musl's C library (musl_NAME), into
# target/linux/bin/, packed with tests/linux/init.c as /init into one
# initramfs, and run by Debian's Linux 6.1 booted once in the same QEMU as
# Faultline. /init prints "==== NAME" before each program and
# "==== NAME status=N" after it; oracle_split cuts the serial output into
# target/linux-out/NAME.txt (the program's key=value lines and its status
# line). linux:NAME passes when the program ran, ended as it must (status
# 0, unless its source names another: oracle_expected_status), printed
# key=value lines, its closing checks_failed=0 and no check_failed= line.
#
# compare_with_faultline diffs those files against Faultline's output for
# the same binaries; it runs only once the Faultline side is switched on
# (FAULTLINE_ORACLE, or the file tests/linux/oracle-programs).

# The Linux that is the oracle: one pinned build, so figures stay comparable.
ORACLE_KERNEL_PACKAGE="linux-image-6.1.0-48-amd64"
ORACLE_CACHE=${XDG_CACHE_HOME:-${HOME:+$HOME/.cache}}
ORACLE_CACHE=${FAULTLINE_LINUX_CACHE:-${ORACLE_CACHE:-$PWD/target/cache}/faultline/linux}
ORACLE_BUILD=target/linux
ORACLE_OUT=target/linux-out
ORACLE_FAULTLINE_OUT=target/faultline-out
ORACLE_TIMEOUT=${FAULTLINE_LINUX_TIMEOUT:-180}
ORACLE_APPEND="console=ttyS0 quiet panic=-1"
ORACLE_LIST=tests/linux/oracle-programs
ORACLE_SRC=tests/linux
# No libc, no SSE in compiled code (signal.c's assembly uses it), no stack protector (it
# reads %fs, and these programs have no TLS), a plain static ET_EXEC.
ORACLE_CFLAGS=(-O2 -std=gnu11 -Wall -Wextra -Werror -static -nostdlib -ffreestanding -fno-builtin
    -fno-stack-protector -fno-pie -no-pie -mgeneral-regs-only -fno-tree-loop-distribute-patterns
    -fno-asynchronous-unwind-tables -fcf-protection=none -Wl,--build-id=none -Wl,-z,noexecstack)

ORACLE_VMLINUZ=""
ORACLE_KERNEL_USED=""
ORACLE_WHY=""

SKIPPED=${SKIPPED:-0}
SKIPPED_NAMES=()

# skip NAME REASON: a test that could not run, counted apart from passes.
skip() {
    SKIPPED=$((SKIPPED + 1))
    SKIPPED_NAMES+=("$1")
    printf 'test %s ... skipped (%s)\n' "$1" "$2"
}

# The test programs: every tests/linux/*.c but the start file, /init and
# the benchmark, and the musl programs, in name order (the order /init
# runs them in).
oracle_programs() {
    local f name
    {
        for f in tests/linux/*.c; do
            name=$(basename "$f" .c)
            case $name in start | init | bench) continue ;; esac
            printf '%s\n' "$name"
        done
        musl_programs
    } | LC_ALL=C sort
}

# oracle_ensure_tools: gcc, cpio and gzip, installed with apt-get when
# missing and we are root. Sets ORACLE_WHY and returns 1 if one is missing.
oracle_ensure_tools() {
    local tool missing=()
    for tool in gcc cpio gzip; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [ "${#missing[@]}" = 0 ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "run.sh: installing ${missing[*]} with apt-get (for the Linux oracle)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 ||
            { DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2; } || true
    fi
    for tool in "${missing[@]}"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            ORACLE_WHY="$tool is missing and could not be installed (apt-get install $tool)"
            return 1
        fi
    done
}

# oracle_download PACKAGE DIR: apt-get download PACKAGE into DIR, after an
# apt-get update if the first try fails. Returns apt-get's verdict.
oracle_download() {
    local package=$1 dir=$2
    (cd "$dir" && apt-get download "$package") >"$dir/apt.log" 2>&1 && return 0
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$dir/apt.log" 2>&1 || true
        (cd "$dir" && apt-get download "$package") >>"$dir/apt.log" 2>&1 && return 0
    fi
    return 1
}

# oracle_fetch_kernel: sets ORACLE_VMLINUZ to Debian's kernel image, from
# the cache (ORACLE_CACHE/PACKAGE/vmlinuz) or downloaded with apt-get into
# it. The pinned package first; if the archive no longer has it, the one
# linux-image-amd64 depends on, saying so. Sets ORACLE_WHY and returns 1
# when no kernel can be had (no network, no apt-get).
oracle_fetch_kernel() {
    local package=$ORACLE_KERNEL_PACKAGE
    if [ -s "$ORACLE_CACHE/$package/vmlinuz" ]; then
        ORACLE_VMLINUZ=$ORACLE_CACHE/$package/vmlinuz ORACLE_KERNEL_USED=$package
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
        ORACLE_WHY="no cached $package in $ORACLE_CACHE and no apt-get/dpkg-deb to download it"
        return 1
    fi
    local tmp
    mkdir -p "$ORACLE_CACHE"
    tmp=$(mktemp -d "$ORACLE_CACHE/download.XXXXXX")
    say "run.sh: downloading $package (Debian's kernel, the oracle) into $ORACLE_CACHE"
    if ! oracle_download "$package" "$tmp"; then
        if apt-cache show "$package" >/dev/null 2>&1; then
            ORACLE_WHY="apt-get download $package failed (no network?): $(tail -n1 "$tmp/apt.log")"
            rm -rf "$tmp"
            return 1
        fi
        # The archive dropped the pinned build: take the current 6.1 one.
        local current
        current=$(apt-cache depends linux-image-amd64 2>/dev/null |
            sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1 || true)
        if [ -z "$current" ]; then
            ORACLE_WHY="$package is not in the archive, and linux-image-amd64 names no kernel to use instead"
            rm -rf "$tmp"
            return 1
        fi
        say "run.sh: $package is no longer in Debian's archive; using $current (what linux-image-amd64 depends on) instead"
        package=$current
        if [ -s "$ORACLE_CACHE/$package/vmlinuz" ]; then
            ORACLE_VMLINUZ=$ORACLE_CACHE/$package/vmlinuz ORACLE_KERNEL_USED=$package
            rm -rf "$tmp"
            return 0
        fi
        if ! oracle_download "$package" "$tmp"; then
            ORACLE_WHY="apt-get download $package failed: $(tail -n1 "$tmp/apt.log")"
            rm -rf "$tmp"
            return 1
        fi
    fi
    local deb
    deb=$(ls "$tmp"/*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ] || ! (cd "$tmp" && dpkg-deb --fsys-tarfile "$deb" | tar -x --wildcards './boot/vmlinuz-*'); then
        ORACLE_WHY="could not unpack the kernel from ${deb:-the download of $package}"
        rm -rf "$tmp"
        return 1
    fi
    mkdir -p "$ORACLE_CACHE/$package"
    local image
    image=$(ls "$tmp"/boot/vmlinuz-* | head -n1 || true)
    mv "$image" "$ORACLE_CACHE/$package/vmlinuz"
    basename "$deb" >"$ORACLE_CACHE/$package/from"
    rm -rf "$tmp"
    ORACLE_VMLINUZ=$ORACLE_CACHE/$package/vmlinuz ORACLE_KERNEL_USED=$package
}

# oracle_build: every program, /init and the benchmark into
# target/linux/bin/. Compiler errors are shown; returns 1 on any.
oracle_build() {
    local f name status=0
    mkdir -p "$ORACLE_BUILD/bin"
    for f in tests/linux/*.c; do
        name=$(basename "$f" .c)
        [ "$name" != start ] || continue
        gcc "${ORACLE_CFLAGS[@]}" -o "$ORACLE_BUILD/bin/$name" "$f" tests/linux/start.c || status=1
    done
    return "$status"
}

# oracle_initramfs OUT PROGRAM...: /init, /proc, and the programs in /bin,
# as a gzipped cpio (newc) archive. Device nodes are not needed: Debian's
# kernel has a built-in initramfs with /dev/console, and /init mounts
# devtmpfs if it has no console all the same.
oracle_initramfs() {
    local out=$1 root name
    shift
    root=$(mktemp -d "$ORACLE_BUILD/root.XXXXXX")
    mkdir -p "$root/bin" "$root/proc" "$root/dev"
    cp "$ORACLE_BUILD/bin/init" "$root/init"
    for name in "$@"; do
        cp "$ORACLE_BUILD/bin/$name" "$root/bin/$name"
    done
    (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9n >"$out"
    local status=${PIPESTATUS[0]}
    rm -rf "$root"
    return "$status"
}

# oracle_boot INITRD LOG LIMIT [QEMU ARGS...]: Linux with that initramfs in
# Faultline's QEMU (machine, CPU model and count, memory), serial output without \r into
# LOG. Returns QEMU's status (0 after /init powered off), 124 on timeout.
oracle_boot() {
    local initrd=$1 log=$2 limit=$3 status
    shift 3
    timeout "$limit" "$QEMU" -machine q35 -accel tcg -cpu max -m "$MEMORY" -smp "${CPUS:-2}" \
        -kernel "$ORACLE_VMLINUZ" -initrd "$initrd" -append "$ORACLE_APPEND" \
        -display none -serial stdio -monitor none -no-reboot "$@" </dev/null 2>&1 |
        tr -d '\r' >"$log"
    status=${PIPESTATUS[0]}
    return "$status"
}

# oracle_split LOG DIR: for each "==== NAME" ... "==== NAME status=N"
# section of LOG, DIR/NAME.txt with the section's key=value lines and the
# status line. Kernel messages and other lines are left out (LOG keeps
# them). A section that never ends gives a file without a status line.
oracle_split() {
    local log=$1 dir=$2
    mkdir -p "$dir"
    rm -f "$dir"/*.txt
    awk -v dir="$dir" '
        /^==== done/ { next }
        /^==== [A-Za-z0-9_.-]+ status=/ {
            if (file != "") { print > file; close(file) }
            file = ""
            next
        }
        /^==== [A-Za-z0-9_.-]+$/ {
            if (file != "") close(file)
            file = dir "/" $2 ".txt"
            printf "" > file
            next
        }
        file != "" && /^[A-Za-z0-9_.]+=/ { print > file }
    ' "$log"
}

# oracle_status_line NAME CODE: the line that ends a program's output, as
# /init prints it ("signal:N" for a program a signal ended). A Faultline
# producer uses it so both sides end alike.
oracle_status_line() {
    printf '==== %s status=%s\n' "$1" "$2"
}

# oracle_expected_status NAME: how program NAME must end, as /init's
# status line says it: the value of a line " * oracle-status: STATUS" in
# ORACLE_SRC/NAME.c (signal:N for a program a signal ends, N for an exit
# code), 0 when there is none. A program that ends so prints its closing
# checks_failed line before it does what ends it.
oracle_expected_status() {
    local want=""
    [ ! -f "$ORACLE_SRC/$1.c" ] ||
        want=$(sed -n 's/^ \* oracle-status: \([0-9a-z:]*\)$/\1/p' "$ORACLE_SRC/$1.c" | head -n1)
    printf '%s\n' "${want:-0}"
}

# oracle_verdict NAME FILE: whether FILE shows a good run of NAME on Linux:
# it exists, ends "==== NAME status=S" with S what oracle_expected_status
# says, has key=value lines besides checks_failed, its closing
# checks_failed=0, and no check_failed= line. Sets ORACLE_WHY when not.
oracle_verdict() {
    local name=$1 file=$2 status want
    ORACLE_WHY=""
    if [ ! -f "$file" ]; then
        ORACLE_WHY="did not run (no '==== $name' line in the serial output)"
        return 1
    fi
    want=$(oracle_expected_status "$name")
    status=$(sed -n "s/^==== $name status=//p" "$file")
    if [ -z "$status" ]; then
        ORACLE_WHY="never finished (no '==== $name status=' line)"
    elif [ "$status" != "$want" ]; then
        ORACLE_WHY="exited with status=$status"
        [ "$want" = 0 ] || ORACLE_WHY+=" (its source says oracle-status: $want)"
    fi
    if grep -q '^check_failed=' "$file"; then
        ORACLE_WHY+="${ORACLE_WHY:+; }$(grep -c '^check_failed=' "$file") self-checks failed: $(grep -m3 '^check_failed=' "$file" | tr '\n' ' ')"
    elif ! grep -qx 'checks_failed=0' "$file"; then
        ORACLE_WHY+="${ORACLE_WHY:+; }no closing checks_failed=0 line"
    fi
    # Not grep -q: it would stop reading, and the first grep's SIGPIPE
    # fail the pipeline (pipefail) for a long enough file.
    if ! grep -v '^checks_failed=' "$file" | grep -E '^[A-Za-z0-9_.]+=' >/dev/null; then
        ORACLE_WHY+="${ORACLE_WHY:+; }printed no key=value line"
    fi
    [ -z "$ORACLE_WHY" ]
}

# oracle_run_linux: build, pack every test program into one initramfs,
# boot Linux once, split its output into ORACLE_OUT. Reports linux:build
# and linux:boot failures itself; returns 1 if there is nothing to judge.
oracle_run_linux() {
    local programs=("$@") initrd log status=0 done_line
    if ! oracle_build; then
        fail "linux:build" "gcc could not build tests/linux/ (errors above)"
        return 1
    fi
    # Here, not in oracle_build: ./run.sh bench needs no musl.
    if ! build_musl_programs "$ORACLE_BUILD/bin"; then
        fail "linux:build" "musl-gcc could not build tests/musl/ (errors above)"
        return 1
    fi
    initrd=$ORACLE_BUILD/initrd-test.gz
    if ! oracle_initramfs "$initrd" "${programs[@]}"; then
        fail "linux:initramfs" "cpio could not pack $initrd"
        return 1
    fi
    mkdir -p "$ORACLE_OUT"
    log=$ORACLE_OUT/serial.log
    local begin=$SECONDS
    oracle_boot "$initrd" "$log" "$ORACLE_TIMEOUT" || status=$?
    oracle_split "$log" "$ORACLE_OUT"
    done_line=$(grep -m1 '^==== done programs=' "$log" || true)
    if [ "$status" = 0 ] && [ "$done_line" = "==== done programs=${#programs[@]}" ]; then
        pass "linux:boot ($ORACLE_KERNEL_USED ran ${#programs[@]} programs and powered off, $((SECONDS - begin))s)"
    else
        local why="QEMU status $status"
        [ "$status" = 124 ] && why="timed out after ${ORACLE_TIMEOUT}s"
        why+=", ${done_line:-no '==== done' line}"
        tail -n 40 "$log" | sed 's/^/    /'
        fail "linux:boot" "$why; the whole output is in $log"
    fi
}

# oracle_enabled: whether the Faultline side is switched on, and for which
# programs: FAULTLINE_ORACLE=all or a list of names, or the file
# tests/linux/oracle-programs (one name a line, or "all"; # comments).
# Prints the names; returns 1 when it is off.
oracle_enabled() {
    local list=""
    if [ -n "${FAULTLINE_ORACLE:-}" ]; then
        list=$FAULTLINE_ORACLE
    elif [ -f "$ORACLE_LIST" ]; then
        list=$(sed 's/#.*//' "$ORACLE_LIST")
    else
        return 1
    fi
    if grep -qw all <<<"$list"; then
        oracle_programs
        echo bench
    else
        tr -s ' \t' '\n' <<<"$list" | grep -v '^$' || true
    fi
}

# compare_with_faultline PRODUCER NAME...: for each NAME, the Linux output
# in ORACLE_OUT/NAME.txt against what PRODUCER makes Faultline print for the
# same binary. PRODUCER is the name of a function called as
#     PRODUCER NAME ELF OUT
# that runs ELF on Faultline with argv [NAME, "a", "b"] and envp
# ["ORACLE=1"] and writes to OUT what /init's section would hold: the
# program's key=value lines, then `oracle_status_line NAME CODE`. It returns
# non-zero only when it could not run the program at all. oracle:NAME
# passes when both files are identical; otherwise both sides are printed.
compare_with_faultline() {
    local producer=$1 name linux theirs status
    shift
    mkdir -p "$ORACLE_FAULTLINE_OUT"
    for name in "$@"; do
        linux=$ORACLE_OUT/$name.txt
        theirs=$ORACLE_FAULTLINE_OUT/$name.txt
        if [ ! -f "$linux" ]; then
            fail "oracle:$name" "no Linux output ($linux)"
            continue
        fi
        if [ ! -f "$ORACLE_BUILD/bin/$name" ]; then
            fail "oracle:$name" "no program $ORACLE_BUILD/bin/$name"
            continue
        fi
        rm -f "$theirs"
        status=0
        "$producer" "$name" "$ORACLE_BUILD/bin/$name" "$theirs" || status=$?
        if [ "$status" != 0 ] || [ ! -f "$theirs" ]; then
            fail "oracle:$name" "Faultline did not run it ($producer exited with status $status)"
        elif diff -q "$linux" "$theirs" >/dev/null; then
            pass "oracle:$name (Faultline printed what Linux printed)"
        else
            echo "    --- Linux ($linux)"
            sed 's/^/    /' "$linux"
            echo "    --- Faultline ($theirs)"
            sed 's/^/    /' "$theirs"
            echo "    --- diff -u Linux Faultline"
            { diff -u "$linux" "$theirs" || true; } | tail -n +3 | sed 's/^/    /'
            fail "oracle:$name" "Faultline's output differs from Linux's"
        fi
    done
}

# oracle_selftest: the splitter, the verdict and the comparison on made-up
# output, so that each is seen to catch what it must (needs no Linux).
oracle_selftest() {
    local dir ok=yes got="" out
    dir=$(mktemp -d)
    printf '%s\r\n' '[    1.0] noise' '==== good' 'a=1' 'not a key line' 'checks_failed=0' \
        '==== good status=0' '==== checkfail' 'b=2' 'check_failed=b (x)' 'checks_failed=1' \
        '==== checkfail status=1' '==== silent' 'checks_failed=0' '==== silent status=0' \
        '==== killed' 'c=3' '==== killed status=signal:11' '==== dies' 'e=5' 'checks_failed=0' \
        '==== dies status=signal:11' '==== diesnot' 'f=6' 'checks_failed=0' '==== diesnot status=0' \
        '==== hung' 'd=4' >"$dir/log"
    tr -d '\r' <"$dir/log" >"$dir/log.lf"
    oracle_split "$dir/log.lf" "$dir/out"
    [ "$(cat "$dir/out/good.txt")" = $'a=1\nchecks_failed=0\n==== good status=0' ] ||
        { ok="" got+="split: good.txt is '$(tr '\n' ';' <"$dir/out/good.txt")'; "; }
    # Two programs whose sources say they end with SIGSEGV: one does.
    mkdir -p "$dir/src"
    printf '/* dies\n * oracle-status: signal:11\n */\n' | tee "$dir/src/dies.c" >"$dir/src/diesnot.c"
    local name want verdicts="" ORACLE_SRC=$dir/src
    for name in good checkfail silent killed dies diesnot hung missing; do
        if oracle_verdict "$name" "$dir/out/$name.txt"; then verdicts+="$name=ok;"; else verdicts+="$name=no;"; fi
    done
    want="good=ok;checkfail=no;silent=no;killed=no;dies=ok;diesnot=no;hung=no;missing=no;"
    [ "$verdicts" = "$want" ] || { ok="" got+="verdicts $verdicts; "; }
    # The comparison, with made-up Faultline sides: one the same, one with
    # a changed line, one that cannot run the program.
    mkdir -p "$dir/bin"
    touch "$dir/bin/good" "$dir/bin/killed" "$dir/bin/checkfail"
    oracle_fake_same() { cp "$dir/out/$1.txt" "$3"; }
    oracle_fake_changed() { sed 's/^c=3$/c=4/' "$dir/out/$1.txt" >"$3"; }
    oracle_fake_broken() { return 3; }
    out=$(
        PASSED=0 FAILED=0 FAILED_NAMES=()
        ORACLE_OUT=$dir/out ORACLE_BUILD=$dir ORACLE_FAULTLINE_OUT=$dir/theirs
        compare_with_faultline oracle_fake_same good
        compare_with_faultline oracle_fake_changed killed
        compare_with_faultline oracle_fake_broken checkfail
        echo "counted $PASSED $FAILED"
    )
    unset -f oracle_fake_same oracle_fake_changed oracle_fake_broken
    grep -q '^test oracle:good .*\.\.\. ok$' <<<"$out" || { ok="" got+="identical output not passed; "; }
    grep -q '^test oracle:killed \.\.\. FAILED' <<<"$out" && grep -q '^    -c=3$' <<<"$out" &&
        grep -q '^    +c=4$' <<<"$out" || { ok="" got+="a changed line not caught with both sides shown; "; }
    grep -q '^test oracle:checkfail \.\.\. FAILED (Faultline did not run it' <<<"$out" ||
        { ok="" got+="a producer that failed not caught; "; }
    grep -qx 'counted 1 2' <<<"$out" || { ok="" got+="$(tail -n1 <<<"$out"); "; }
    # The benchmark join: every Faultline figure, a ratio where Linux has one.
    printf 'a=200\nb=100\n' >"$dir/linux.txt"
    printf 'a=300\nc=5\n' >"$dir/faultline.txt"
    out=$(oracle_bench_join "$dir/linux.txt" "$dir/faultline.txt")
    [ "$out" = $'faultline_a=300\nratio_a=1.50\nfaultline_c=5' ] || { ok="" got+="bench join gave '$(tr '\n' ';' <<<"$out")'; "; }
    if [ -n "$ok" ]; then
        pass "oracle_selftest (split, verdict and compare_with_faultline catch a failed check, a signal, a hang, silence, a changed line and a producer that failed, and take the end a source names; the bench join)"
    else
        fail "oracle_selftest" "$got"
    fi
    rm -rf "$dir"
}

# linux_tests: the Linux half of the oracle, for ./run.sh test.
linux_tests() {
    local begin=$SECONDS
    echo "== Linux as the oracle (tests/linux/, docs/oracle.md)"
    linux_tests_run
    echo "== Linux as the oracle: $((SECONDS - begin))s"
}

linux_tests_run() {
    oracle_selftest
    local programs name enabled
    mapfile -t programs < <(oracle_programs)
    if ! oracle_ensure_tools || ! oracle_fetch_kernel; then
        for name in "${programs[@]}"; do skip "linux:$name" "$ORACLE_WHY"; done
        return 0
    fi
    oracle_run_linux "${programs[@]}" || return 0
    for name in "${programs[@]}"; do
        if oracle_verdict "$name" "$ORACLE_OUT/$name.txt"; then
            pass "linux:$name ($(grep -vc '^====' "$ORACLE_OUT/$name.txt") key=value lines, $ORACLE_OUT/$name.txt)"
        else
            [ ! -f "$ORACLE_OUT/$name.txt" ] || sed 's/^/    /' "$ORACLE_OUT/$name.txt"
            fail "linux:$name" "$ORACLE_WHY"
        fi
    done
    if ! enabled=$(oracle_enabled); then
        # Not a test yet: nothing is claimed, nothing counted.
        echo "oracle: Faultline's side of the comparison is not switched on (FAULTLINE_ORACLE or $ORACLE_LIST; docs/oracle.md)"
        return 0
    fi
    if ! declare -F faultline_program_output >/dev/null; then
        fail "oracle:setup" "the comparison is switched on but run.sh defines no faultline_program_output"
        return 0
    fi
    local -a chosen=()
    for name in $enabled; do
        [ "$name" != bench ] || continue # ./run.sh bench compares that one
        if printf '%s\n' "${programs[@]}" | grep -qx -- "$name"; then
            chosen+=("$name")
        else
            fail "oracle:$name" "listed for comparison, but there is no tests/linux/$name.c"
        fi
    done
    compare_with_faultline faultline_program_output "${chosen[@]}"
    for name in "${programs[@]}"; do
        grep -qx -- "$name" <<<"$enabled" || skip "oracle:$name" "not listed in FAULTLINE_ORACLE or $ORACLE_LIST"
    done
}

# oracle_bench_join LINUX FAULTLINE: from two files of NAME=cycles lines,
# faultline_NAME= for each of Faultline's, and ratio_NAME= (Faultline /
# Linux, two decimals) after it where Linux has NAME too (remote_wakeup
# needs two CPUs, and Linux's figures come from one: linux_bench says why).
oracle_bench_join() {
    awk -F= 'NR == FNR { linux[$1] = $2; next }
        { printf "faultline_%s=%s\n", $1, $2 }
        ($1 in linux) && linux[$1] > 0 { printf "ratio_%s=%.2f\n", $1, $2 / linux[$1] }' "$1" "$2"
}

# linux_bench: ./run.sh bench's Linux figures. Boots Linux once under
# -icount shift=0 with only tests/linux/bench.c in /bin and prints its
# figures as linux_NAME=cycles. Once Faultline can run the same binary
# (FAULTLINE_ORACLE or tests/linux/oracle-programs lists bench, and run.sh
# defines faultline_bench_output ELF OUT writing its NAME=cycles lines), it
# adds faultline_NAME= and ratio_NAME= lines.
linux_bench() {
    if ! oracle_ensure_tools || ! oracle_fetch_kernel; then
        say "run.sh: linux_* figures skipped ($ORACLE_WHY)"
        return 0
    fi
    oracle_build || { say "run.sh: gcc could not build tests/linux/"; return 1; }
    local initrd=$ORACLE_BUILD/initrd-bench.gz log=$ORACLE_BUILD/bench-serial.log status=0
    local figures=$ORACLE_BUILD/bench-linux.txt
    oracle_initramfs "$initrd" bench || { say "run.sh: cpio could not pack $initrd"; return 1; }
    # About 6 G instructions to boot: ~15 s of wall time under -icount.
    # One CPU: under -icount, Linux 6.1 never gets past bringing up its
    # second ("x86: Booting SMP configuration:", QEMU 7.2, with sleep on
    # or off). The figures are single-threaded or pairs of threads, which
    # a second CPU would only spread, but for remote_wakeup, which needs two
    # and is therefore Faultline's alone (no ratio).
    oracle_boot "$initrd" "$log" 600 -icount shift=0 -smp 1 || status=$?
    oracle_split "$log" "$ORACLE_BUILD/bench-out"
    if [ "$status" != 0 ] || ! oracle_verdict bench "$ORACLE_BUILD/bench-out/bench.txt"; then
        sed 's/^/    /' "$log" >&2
        say "run.sh: the Linux benchmark failed (QEMU status $status${ORACLE_WHY:+, $ORACLE_WHY})"
        return 1
    fi
    grep -E '^[a-z0-9_]+=[0-9]+$' "$ORACLE_BUILD/bench-out/bench.txt" | grep -v '^checks_failed=' >"$figures" || true
    sed 's/^/linux_/' "$figures"
    say "run.sh: linux_* figures from $ORACLE_KERNEL_USED"
    local enabled theirs=$ORACLE_BUILD/bench-faultline.txt
    if enabled=$(oracle_enabled) && grep -qx bench <<<"$enabled"; then
        if ! declare -F faultline_bench_output >/dev/null; then
            say "run.sh: the bench comparison is switched on but run.sh defines no faultline_bench_output"
            return 1
        fi
        faultline_bench_output "$ORACLE_BUILD/bin/bench" "$theirs" || {
            say "run.sh: Faultline could not run the benchmark program"
            return 1
        }
        oracle_bench_join "$figures" "$theirs"
    fi
}
