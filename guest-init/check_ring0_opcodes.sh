#!/usr/bin/env bash
# Fails if the guest kernel's code contains an instruction that PVM's ring-0
# emulator cannot execute (PLATFORM.md: SSE/AVX, x87 arithmetic, popcnt,
# BMI, crc32, AES, cmpxchg16b, xgetbv, xsave, monitor/mwait, clac/stac,
# rdtscp, int3, ...). The nucleus runs in ring 0 under PVM, and on hardware
# the whole runtime runs in ring 0 after `syscall`, so all kernel code is
# checked. The one int3 allowed is the runtime's wait-gate site (the
# instruction right before the symbol ember_gate_return).
#
# usage: check_ring0_opcodes.sh ember-guest.elf
set -euo pipefail
elf=${1:?usage: $0 ember-guest.elf}
objdump=${OBJDUMP:-objdump}

gate_return=$(nm "$elf" | awk '$3 == "ember_gate_return" { print $1 }')
[[ -n "$gate_return" ]] || { echo "check_ring0_opcodes: $elf has no ember_gate_return symbol" >&2; exit 1; }
gate_site=$(printf '%x' $((16#$gate_return - 1)))

# x87 arithmetic/loads: every f-mnemonic except fxsave/fxrstor (those work).
bad='^(f[a-z0-9]*|v[a-z0-9]+|popcnt|lzcnt|tzcnt|andn|bextr|blsi|blsmsk|blsr|bzhi|pdep|pext|sarx|shlx|shrx|rorx|mulx|crc32[a-z]*|aes[a-z]*|pclmul[a-z]*|sha[0-9a-z]+|cmpxchg16b|lock cmpxchg16b|xgetbv|xsetbv|xsave[a-z0-9]*|xrstor[a-z0-9]*|monitor[a-z]*|mwait[a-z]*|clac|stac|rdtscp|rdpid|rdfsbase|rdgsbase|wrfsbase|wrgsbase|endbr64|endbr32|ldmxcsr|stmxcsr|emms|movnti|int3|movbe|adcx|adox)$'

check() {  # $1: objdump arch args, $2: section
  "$objdump" -d --no-show-raw-insn $1 -j "$2" "$elf" | awk -v bad="$bad" -v gate="$gate_site" -v sec="$2" '
    /^[0-9a-f]+ <.*>:$/ { sym = $2; next }
    /^ *[0-9a-f]+:\t/ {
      split($0, parts, "\t")
      addr = parts[1]; sub(/^ +/, "", addr); sub(/:$/, "", addr)
      insn = parts[2]
      # strip prefixes objdump prints as separate words
      n = split(insn, w, /[ ]+/)
      m = w[1]
      if ((m == "rep" || m == "repz" || m == "repnz" || m == "lock" || m == "data16" || m == "addr32" || m == "cs" || m == "ds" || m == "notrack" || m == "bnd") && n > 1) m = w[2]
      if (m == "fxsave" || m == "fxrstor" || m == "fxsave64" || m == "fxrstor64") next
      flagged = (m ~ bad) || (insn ~ /%(xmm|ymm|zmm|mm[0-7]|st)/)
      if (m == "int3" && addr == gate) { gate_seen++; next }
      if (m == "(bad)") flagged = 1
      if (flagged) { printf "check_ring0_opcodes: %s %s: %s  %s\n", sec, sym, addr, insn; bad_count++ }
    }
    END {
      if (sec == ".text" && gate_seen != 1) { printf "check_ring0_opcodes: expected exactly one int3 at the wait-gate site %s, found %d\n", gate, gate_seen; exit 1 }
      exit bad_count ? 1 : 0
    }'
}

status=0
check "" .text || status=1
if "$objdump" -h "$elf" | grep -q ' \.text32 '; then
  check "-m i386" .text32 || status=1
fi
if ((status)); then
  echo "check_ring0_opcodes: $elf has instructions ring 0 cannot run under PVM (PLATFORM.md)" >&2
  exit 1
fi
