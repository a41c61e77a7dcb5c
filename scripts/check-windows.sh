#!/usr/bin/env bash
# Windows build check: cross-checks HostPulse for x86_64-pc-windows-gnu with Debian's mingw-w64, so
# that a Windows-only compile error in our code is caught on Linux, and cross-builds the CLI.
# docs/windows.md explains the results and records the last one.
#
#   bash scripts/check-windows.sh [--no-install] [--strict] [--all-targets] [CRATE...]
#
# CRATE defaults to hostpulse-core hostpulse-agent hostpulse-cli hostpulse-app, each checked on its
# own (one dependency that cannot cross-build does not hide the others):
#  1. `cargo check --keep-going --target x86_64-pc-windows-gnu -p CRATE`, the manifests as they are,
#     with the cross knobs set below (mingw CC/CXX/AR for the target, pkg-config limited to the
#     target's directory so that no Linux library is ever picked up). PASS there means the crate
#     and all its dependencies, C build scripts included, built for Windows here.
#  2. Where a dependency's build script fails, its name and the reason (from its log) are printed,
#     and the check is run again with a cargo build-script override for it (`[target.<triple>.<links>]`:
#     cargo does not run that build script and takes the given output instead), repeating while
#     further build scripts fail. `cargo check` links nothing, so this is enough to type-check our
#     own code for Windows; it is not a Windows build. (With the Windows rdkafka features of
#     crates/hostpulse-agent/Cargo.toml, no override is needed today.)
#  3. If the CLI passed step 1 (every C dependency cross-built), `cargo build` of the CLI: a real
#     hostpulse.exe, whose size and imported DLLs are printed.
# --all-targets also checks tests, examples and benches. Missing tools are installed (the Rust
# target, mingw-w64, and cmake, perl and make for librdkafka and OpenSSL); --no-install installs
# nothing.
#
# Exit status: 0 when each crate's own code compiles for Windows (in step 1, or in step 2 where
# only dependencies stood in the way); 1 when one of our crates fails for a reason in our project
# (a Rust error in our code, or our own build script failing for Windows), and, with --strict, also
# when a dependency cannot cross-build here; 2 when the tools cannot be set up.
# Logs and the summary: target/check-windows/. Nothing in the source tree is left changed (the
# src-tauri/gen/schemas/windows-schema.json that tauri-build writes is removed again unless it was
# there before). The shared target dir is used as usual; builds wait on cargo's lock.
set -uo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-pc-windows-gnu
T_=${TARGET//-/_}
OUT=target/check-windows
INSTALL=1 STRICT=0 ALL_TARGETS=()
CRATES=()
for arg in "$@"; do
  case $arg in
    --no-install) INSTALL=0 ;;
    --strict) STRICT=1 ;;
    --all-targets) ALL_TARGETS=(--all-targets) ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $arg" >&2; exit 2 ;;
    *) CRATES+=("$arg") ;;
  esac
done
[ ${#CRATES[@]} -gt 0 ] || CRATES=(hostpulse-core hostpulse-agent hostpulse-cli hostpulse-app)
OURS=" $(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null \
  | grep -o '"name":"[^"]*","version"' | sed 's/"name":"\([^"]*\)".*/\1/' | tr '\n' ' ') "
[ "$OURS" != "  " ] || OURS=" hostpulse-core hostpulse-agent hostpulse-cli hostpulse-app hostpulse-tests "

say() { printf '\n==> %s\n' "$*"; }

# --- Tools: the Rust target, Debian's mingw-w64 (gcc, g++, binutils with windres), and the tools
# of the Windows C builds: cmake (librdkafka, rdkafka's cmake-build), perl and make (OpenSSL from
# source, openssl-src). ---------------------------------------------------------------------------
if [ "$INSTALL" = 1 ]; then
  if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    say "rustup target add $TARGET"
    rustup target add "$TARGET" || { echo "cannot add the Rust target $TARGET" >&2; exit 2; }
  fi
  if ! command -v x86_64-w64-mingw32-gcc >/dev/null || ! command -v x86_64-w64-mingw32-g++ >/dev/null \
    || ! command -v x86_64-w64-mingw32-windres >/dev/null; then
    say "apt-get install mingw-w64 (gcc, g++, binutils for x86_64)"
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64 binutils-mingw-w64-x86-64 >/dev/null; } \
      || { echo "cannot install mingw-w64 with apt-get" >&2; exit 2; }
  fi
  missing=()
  for tool in cmake perl make; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      "${missing[@]}" >/dev/null; } || { echo "cannot install ${missing[*]} with apt-get" >&2; exit 2; }
  fi
fi
for tool in x86_64-w64-mingw32-gcc x86_64-w64-mingw32-g++ x86_64-w64-mingw32-ar x86_64-w64-mingw32-windres \
  x86_64-w64-mingw32-objdump cmake perl make; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (run without --no-install)" >&2; exit 2; }
done
rustup target list --installed 2>/dev/null | grep -qx "$TARGET" \
  || { echo "the Rust target $TARGET is missing (run without --no-install)" >&2; exit 2; }

# --- Cross knobs. ------------------------------------------------------------------------------
# cc-rs (sqlite, zstd, zlib, OpenSSL's openssl-src, ...) and the cmake crate (librdkafka) read the
# target-suffixed variables.
export "CC_$T_=x86_64-w64-mingw32-gcc" "CXX_$T_=x86_64-w64-mingw32-g++" "AR_$T_=x86_64-w64-mingw32-ar"
export "RANLIB_$T_=x86_64-w64-mingw32-ranlib"
export "CARGO_TARGET_${T_^^}_LINKER=x86_64-w64-mingw32-gcc"
# librdkafka's own configure (rdkafka-sys without cmake-build, i.e. if the Windows features were
# lost) reads only plain CC/CXX/AR: without them it would quietly build a Linux librdkafka for the
# Windows target. Host-side C builds keep the host compiler through cc-rs's HOST_* variables.
export CC=x86_64-w64-mingw32-gcc CXX=x86_64-w64-mingw32-g++ AR=x86_64-w64-mingw32-ar \
  RANLIB=x86_64-w64-mingw32-ranlib HOST_CC=cc HOST_CXX=c++ HOST_AR=ar HOST_RANLIB=ranlib
# pkg-config: allowed for the target, but looking only in the mingw sysroot (which Debian ships
# without .pc files for OpenSSL, SASL, ...): never at the Linux libraries of the build machine.
MINGW_PC=/usr/x86_64-w64-mingw32/lib/pkgconfig
export "PKG_CONFIG_ALLOW_CROSS_$T_=1" "PKG_CONFIG_LIBDIR_$T_=$MINGW_PC" "PKG_CONFIG_PATH_$T_=$MINGW_PC"

mkdir -p "$OUT"
rm -f "$OUT"/*.log "$OUT"/*.toml "$OUT"/summary.txt
SCHEMA=src-tauri/gen/schemas/windows-schema.json
[ -e "$SCHEMA" ] && SCHEMA_WAS_THERE=1 || SCHEMA_WAS_THERE=0
cleanup() { [ "$SCHEMA_WAS_THERE" = 1 ] || rm -f "$SCHEMA"; }
trap cleanup EXIT

# --- Reading cargo's output. -------------------------------------------------------------------
# "name|path" for each failed build script (path only for our own packages).
failed_build_scripts() {
  sed -n 's/^error: failed to run custom build command for `\([^ `]*\) v[^ `]*\( (\([^)]*\))\)\{0,1\}`.*/\1|\3/p' "$1" | sort -u
}
failed_compiles() { sed -n 's/^error: could not compile `\([^`]*\)`.*/\1/p' "$1" | sort -u; }
is_ours() { [[ $OURS == *" $1 "* ]]; }
# The telling lines of one failed build script's output.
reason_of() { # LOG NAME
  awk -v n="$2" '
    index($0, "error: failed to run custom build command for `" n " ") == 1 { inb = 1; next }
    inb && (/^(error|warning)[:[]/ || /^ +(Compiling|Checking|Finished|Blocking|Fresh|Updating|Locking|Adding|Downloaded?) /) { inb = 0 }
    inb && after { print; after = 0 }
    inb && /panicked at/ { after = 1; next }
    inb && /^ *cargo:/ { next }
    inb && /fatal error:|checking for OS or distribution|Could not find directory|Unable to find|Configure failed|failed \(fail\)|not supported|was not found in the pkg-config|vcpkg did not find|No such file/ { print }
  ' "$1" | sed 's/^ *//; s/^_mkltmp[A-Za-z0-9]*\.c:[0-9:]* //' | grep -v '^$' | awk '!seen[$0]++' | head -n 10 | sed 's/^/      /'
}
# The first lines of each error in one of our crates.
our_errors() { # LOG
  awk '/^error(\[E[0-9]+\])?: / && !/could not compile|failed to run custom build/ { n = 3 } n > 0 { print; n-- }' "$1" \
    | head -n 40 | sed 's/^/      /'
}
our_warnings() { # LOG
  awk '/^warning: / && !/generated [0-9]+ warning|build failed/ { w = $0; next }
       w && /^ *--> (crates|src-tauri|tests)\// { print w "  " $2; w = "" }' "$1" | sort -u | sed 's/^/      /'
}
# The `links` name of a -sys crate: the build-script override is keyed by it.
links_of() {
  case $1 in
    openssl-sys) echo openssl ;; sasl2-sys) echo sasl2 ;; rdkafka-sys) echo rdkafka ;;
    libz-sys) echo z ;; zstd-sys) echo zstd ;; libsqlite3-sys) echo sqlite3 ;;
    *) cargo metadata --format-version 1 --filter-platform "$TARGET" 2>/dev/null | { jq -r --arg n "$1" \
         '.packages[] | select(.name == $n) | .links // empty' 2>/dev/null || python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == sys.argv[1] and p.get("links"): print(p["links"])' "$1"; } | head -n 1 ;;
  esac
}
# What an override gives in place of a build script's output: only what the crate's Rust code
# needs to compile (the cfgs of OpenSSL 3.0, the SASL version 2.1.28 that sasl2-sys reads with
# env!). Link lines are beside the point: check links nothing.
stub_body() {
  case $1 in
    openssl) cat <<'EOF'
rustc-link-lib = ["ssl", "crypto"]
rustc-cfg = ["openssl", "ossl101", "ossl102", "ossl102f", "ossl102h", "ossl110", "ossl110f", "ossl110g", "ossl110h", "ossl111", "ossl111b", "ossl111c", "ossl111d", "ossl300"]
version_number = "30000000"
EOF
    ;;
    sasl2) cat <<'EOF'
rustc-link-lib = ["sasl2"]
rustc-env = { SASL_VERSION_MAJOR = "\u0002", SASL_VERSION_MINOR = "\u0001", SASL_VERSION_STEP = "\u001c" }
EOF
    ;;
    *) echo "rustc-link-lib = [\"$1\"]" ;;
  esac
}
write_stubs() { # FILE LINKS...
  local f=$1; shift
  : >"$f"
  for l in "$@"; do printf '[target.%s.%s]\n%s\n\n' "$TARGET" "$l" "$(stub_body "$l")" >>"$f"; done
}
check() { # LOG [cargo args...]
  local log=$1; shift
  cargo check --keep-going --target "$TARGET" "${ALL_TARGETS[@]}" "$@" >"$log" 2>&1
}

# --- The checks. -------------------------------------------------------------------------------
declare -A RESULT DETAIL
FAIL=0 BLOCKED=0
for crate in "${CRATES[@]}"; do
  say "cargo check --target $TARGET -p $crate"
  start=$SECONDS
  log=$OUT/$crate.log
  check "$log" -p "$crate"
  rc=$?
  detail=""
  if [ $rc = 0 ]; then
    RESULT[$crate]="PASS: compiles for Windows as it is ($((SECONDS - start)) s)"
  else
    our_fail="" our_compile=0 deps="" stubs=() reasons=""
    while IFS='|' read -r name path; do
      [ -n "$name" ] || continue
      if [ -n "$path" ] || is_ours "$name"; then
        our_fail+="  our build script of $name fails:"$'\n'"$(reason_of "$log" "$name")"$'\n'
      else
        deps+=" $name"
        reasons+="    $name (build script):"$'\n'"$(reason_of "$log" "$name")"$'\n'
      fi
    done < <(failed_build_scripts "$log")
    for name in $(failed_compiles "$log"); do
      if is_ours "$name"; then
        our_compile=1
        our_fail+="  $name does not compile for Windows:"$'\n'"$(our_errors "$log")"$'\n'
      else
        deps+=" $name"; reasons+="    $name (Rust code) does not compile for Windows"$'\n'
      fi
    done
    if [ -z "$our_fail$deps" ]; then our_fail="  cargo failed (see $log):"$'\n'"$(grep '^error' "$log" | head -n 5)"; fi
    # Step 2: overrides for what cannot be had here, to type-check our own code nonetheless.
    blocked_rust=0
    for d in $deps; do
      l=$(links_of "$d")
      if [ -z "$l" ]; then blocked_rust=1; else stubs+=("$l"); fi
    done
    src=1
    if [ $blocked_rust = 0 ] && [ ${#stubs[@]} -gt 0 ]; then
      for round in 1 2 3 4 5 6; do
        slog=$OUT/$crate.stubbed-$round.log
        write_stubs "$OUT/$crate.stubs.toml" "${stubs[@]}"
        say "  again with build-script overrides for: ${stubs[*]}"
        check "$slog" -p "$crate" --config "$OUT/$crate.stubs.toml"
        src=$?
        more=()
        while IFS='|' read -r name path; do
          [ -n "$name" ] || continue
          if [ -n "$path" ] || is_ours "$name"; then
            our_fail+="  our build script of $name fails (with overrides):"$'\n'"$(reason_of "$slog" "$name")"$'\n'
            continue
          fi
          l=$(links_of "$name")
          deps+=" $name"
          reasons+="    $name (build script, reached once the above were overridden):"$'\n'"$(reason_of "$slog" "$name")"$'\n'
          if [ -n "$l" ] && [[ " ${stubs[*]} " != *" $l "* ]]; then more+=("$l"); else blocked_rust=1; fi
        done < <(failed_build_scripts "$slog")
        [ ${#more[@]} -gt 0 ] && [ $blocked_rust = 0 ] || break
        stubs+=("${more[@]}")
      done
      for name in $(failed_compiles "$slog"); do
        if is_ours "$name"; then
          our_compile=1
          our_fail+="  $name does not compile for Windows:"$'\n'"$(our_errors "$slog")"$'\n'
        else
          deps+=" $name"; reasons+="    $name (Rust code) does not compile for Windows"$'\n'; blocked_rust=1
        fi
      done
      warnings=$(our_warnings "$slog")
      [ -z "$warnings" ] || detail+="  warnings in our code for Windows:"$'\n'"$warnings"$'\n'
      if [ $our_compile = 1 ]; then
        code="our Rust code does not compile for Windows"
      elif [ $src = 0 ]; then
        code="our Rust code type-checks for Windows (with overrides for: ${stubs[*]})"
      else
        code="our Rust code could not be fully checked (see $slog)"
      fi
    elif [ $our_compile = 1 ]; then
      code="our Rust code does not compile for Windows"
    else
      code="our Rust code could not be reached (see $log)"
    fi
    deps=$(echo $deps | tr ' ' '\n' | awk '!seen[$0]++' | tr '\n' ' ')
    [ -z "$deps" ] || { detail+="  dependencies that do not cross-build here: $deps"$'\n'"$reasons"; BLOCKED=1; }
    if [ -n "$our_fail" ] || { [ "$src" != 0 ] && [ $blocked_rust = 0 ]; }; then
      RESULT[$crate]="FAIL (our project): $code"
      detail="$our_fail$detail"
      FAIL=1
    else
      RESULT[$crate]="BLOCKED by dependencies that do not cross-build here; $code"
    fi
    RESULT[$crate]+=" ($((SECONDS - start)) s)"
  fi
  if [ $rc = 0 ]; then
    warnings=$(our_warnings "$log")
    [ -z "$warnings" ] || detail+="  warnings in our code for Windows:"$'\n'"$warnings"$'\n'
  fi
  DETAIL[$crate]=$detail
  echo "  ${RESULT[$crate]}"
  [ -z "$detail" ] || printf '%s' "$detail"
done

# --- Step 3: a full build of the CLI, if its C dependencies cross-built. -----------------------
BUILD="not tried"
if [[ " ${CRATES[*]} " == *" hostpulse-cli "* ]]; then
  if [[ ${RESULT[hostpulse-cli]} == PASS* ]]; then
    say "cargo build --target $TARGET -p hostpulse-cli"
    start=$SECONDS
    if cargo build --target "$TARGET" -p hostpulse-cli >"$OUT/build-cli.log" 2>&1; then
      exe=target/$TARGET/debug/hostpulse.exe
      dlls=$(x86_64-w64-mingw32-objdump -p "$exe" | sed -n 's/^\s*DLL Name: //p' | sort -fu | tr '\n' ' ')
      BUILD="PASS: $exe, $(stat -c %s "$exe") bytes, imports: ${dlls% } ($((SECONDS - start)) s)"
    else
      BUILD="FAIL (see $OUT/build-cli.log)"; FAIL=1
    fi
  else
    BUILD="skipped: the CLI's C dependencies do not cross-build here (above)"
  fi
fi

# --- Summary. ----------------------------------------------------------------------------------
{
  echo "Windows check ($TARGET), $(date -u +%Y-%m-%d) at $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
  echo "mingw: $(x86_64-w64-mingw32-gcc --version | head -n 1); $(rustc --version)"
  for crate in "${CRATES[@]}"; do
    echo "$crate: ${RESULT[$crate]}"
    [ -z "${DETAIL[$crate]}" ] || printf '%s' "${DETAIL[$crate]}"
  done
  echo "full build of hostpulse-cli: $BUILD"
} >"$OUT/summary.txt"
say "Summary (also in $OUT/summary.txt)"
cat "$OUT/summary.txt"
if [ $FAIL = 1 ]; then
  echo "FAILED: our own code or project does not build for Windows (above)."
  exit 1
elif [ $STRICT = 1 ] && [ $BLOCKED = 1 ]; then
  echo "FAILED (--strict): dependencies do not cross-build here (above)."
  exit 1
fi
echo "OK: our own code compiles for Windows$([ $BLOCKED = 1 ] && echo '; some C dependencies only with overrides (above)')."
