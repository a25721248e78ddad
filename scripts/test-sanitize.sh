#!/usr/bin/env bash
# npm run test:sanitize
#
# Builds the addon and the native unit test with AddressSanitizer +
# UndefinedBehaviorSanitizer (CMakeLists.txt through cmake-js, offline), runs
# the native unit tests (CTest: ring_test, extents_test, digest_test), then the vitest
# integration suite against the sanitized addon.
#
#   scripts/test-sanitize.sh [extra vitest args...]
#
# Environment:
#   DEVMOVE_NODEDIR   Node install prefix whose include/node holds the headers
#                     (default: the prefix of the `node` running this script)
#   DEVMOVE_SANITIZE_SKIP_VITEST=1   stop after the native unit test
#
# Needs: cmake >= 3.19, g++ (with libasan/libubsan: Debian package
# libgcc-12-dev, pulled in by g++-12), make or ninja, node with its headers.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

OUT=build-sanitize
CONFIG=Debug   # no NDEBUG: the engine's assert()s stay on; CMakeLists adds -O1 -g
REPORTS="$ROOT/$OUT/sanitizer-reports"

step() { printf '\n=== %s\n' "$*"; }
die() {
  printf 'test-sanitize: %s\n' "$*" >&2
  exit 1
}
# Prints the command (shell-quoted, so it can be pasted), then runs it.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  "$@"
}

# ---- Prerequisites ------------------------------------------------------------
for tool in node cmake g++; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y cmake g++ make)"
done
[ -x node_modules/.bin/cmake-js ] || die "node_modules/.bin/cmake-js missing: run npm ci first"

# g++ -print-file-name echoes the bare name when it cannot find the file.
LIBASAN="$(g++ -print-file-name=libasan.so)"
LIBUBSAN="$(g++ -print-file-name=libubsan.so)"
for lib in "$LIBASAN" "$LIBUBSAN"; do
  [[ "$lib" == /* && -e "$lib" ]] ||
    die "$(basename "$lib") not found for $(g++ -dumpfullversion): apt-get install -y libgcc-$(g++ -dumpversion | cut -d. -f1)-dev (it pulls in libasan and libubsan)"
done

# cmake-js downloads Node's headers from nodejs.org unless it is given a local
# Node install: its only switch for that is the npm_config_nodedir environment
# variable (read in cmake-js/lib/buildSystem.js as options.runtimeDirectory;
# Dist then finds <nodedir>/include/node/node.h and skips the download). Take
# the prefix of the node that runs the tests, so headers and runtime match.
NODEDIR="${DEVMOVE_NODEDIR:-$(node -p 'require("path").resolve(process.execPath, "..", "..")')}"
[ -f "$NODEDIR/include/node/node_api.h" ] ||
  die "no Node headers in $NODEDIR/include/node (install Node with its headers, or set DEVMOVE_NODEDIR)"
CMAKE_JS=(env "npm_config_nodedir=$NODEDIR" node_modules/.bin/cmake-js)

# ---- (a) Configure + build, sanitizers on ------------------------------------
step "build ($OUT, ASan + UBSan)"
run "${CMAKE_JS[@]}" configure --out "$OUT" --config "$CONFIG" --CDDEVMOVE_SANITIZE=ON
run "${CMAKE_JS[@]}" build --out "$OUT" --config "$CONFIG" --parallel "$(nproc)"
ADDON="$ROOT/$OUT/$CONFIG/devmove.node"
[ -f "$ADDON" ] || die "the build did not produce $ADDON"

# ---- (b) Native unit test -----------------------------------------------------
# The native tests are instrumented executables: no preload; CTest
# sets their ASAN_OPTIONS (leak detection on) and UBSAN_OPTIONS (CMakeLists.txt).
step "native unit tests (ctest)"
run ctest --test-dir "$OUT" --output-on-failure

if [ "${DEVMOVE_SANITIZE_SKIP_VITEST:-}" = 1 ]; then
  echo "test-sanitize: DEVMOVE_SANITIZE_SKIP_VITEST=1, stopping after the native test"
  exit 0
fi

# ---- (c) Integration suite against the sanitized addon ------------------------
step "TypeScript (dist/, used by the CLI tests)"
run node_modules/.bin/tsc -p tsconfig.json

# node is not instrumented, so the ASan runtime must be loaded before anything
# else in every node process: LD_PRELOAD, inherited by vitest's workers and by
# the CLI processes the tests spawn. Options:
#   detect_leaks=0   LeakSanitizer would report Node's own (uninstrumented,
#                    never freed at exit) allocations; ring_test checks leaks
#   abort_on_error=1 a report kills the process with SIGABRT: never mistaken
#                    for an expected error exit of the CLI
#   log_path=...     reports also land in files, checked after the run, so one
#                    in a child process whose output a test swallows still fails
#   UBSan: halt_on_error=1 (the addon is built -fno-sanitize-recover=undefined
#   anyway) and print_stacktrace=1.
rm -rf "$REPORTS"
mkdir -p "$REPORTS"
SAN_ENV=(
  "DEVMOVE_NATIVE_PATH=$ADDON"
  "LD_PRELOAD=$LIBASAN $LIBUBSAN"
  "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:log_path=$REPORTS/asan"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$REPORTS/ubsan"
)

# LD_PRELOAD reaches every child process, including uninstrumented tools the
# tests compare against. GNU dd calls aligned_alloc(4096, 512), which glibc
# allows but gcc-12's ASan aborts on (C11: size must be a multiple of the
# alignment; no ASAN_OPTIONS switch turns that check off). Such tools run
# through a shim without the preload.
SHIMS="$ROOT/$OUT/unsanitized-bin"
rm -rf "$SHIMS"
mkdir -p "$SHIMS"
for tool in dd; do
  real="$(command -v "$tool")" || continue
  printf '#!/bin/sh\n# test-sanitize.sh: %s without the ASan/UBSan preload\nunset LD_PRELOAD\nexec %s "$@"\n' \
    "$tool" "$real" >"$SHIMS/$tool"
  chmod +x "$SHIMS/$tool"
done
SAN_ENV+=("PATH=$SHIMS:$PATH")

check_reports() {
  local found=0 f
  for f in "$REPORTS"/*; do
    [ -e "$f" ] || continue
    found=1
    printf '\n--- sanitizer report %s\n' "$f"
    cat "$f"
  done
  return "$found"
}

step "smoke: copy() through dist/ with the sanitized addon"
status=0
run env "${SAN_ENV[@]}" node -e '
  const fs = require("fs"), os = require("os"), path = require("path"), crypto = require("crypto");
  const { copy } = require("./dist");
  (async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "devmove-sanitize-"));
    try {
      for (const len of [1, 4095, 512 * 1024 + 1, 3 * 1024 * 1024]) {
        const source = path.join(dir, "src"), target = path.join(dir, "dst" + len);
        const data = crypto.randomBytes(len);
        fs.writeFileSync(source, data);
        await copy({ source, target });
        if (!fs.readFileSync(target).equals(data)) throw new Error("copy of " + len + " bytes differs");
      }
      console.log("smoke: ok (" + process.env.DEVMOVE_NATIVE_PATH + ")");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  })().catch((e) => { console.error(e); process.exit(1); });
' || status=$?
if ! check_reports || [ "$status" -ne 0 ]; then
  die "the smoke copy under the sanitizers failed (exit $status)"
fi

step "vitest integration suite, sanitized addon"
status=0
run env "${SAN_ENV[@]}" node_modules/.bin/vitest run test/integration "$@" || status=$?
if ! check_reports; then
  die "sanitizer reports above (vitest exit $status)"
fi
[ "$status" -eq 0 ] || die "vitest failed (exit $status)"
echo "test-sanitize: ok"
