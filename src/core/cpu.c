#include "core/cpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define CQ_X86 1
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__linux__) && defined(__aarch64__)
#include <sys/auxv.h>
/* the bits of AT_HWCAP (arch/arm64/include/uapi/asm/hwcap.h), spelled out for older headers */
#define CQ_HWCAP_ASIMD (1ul << 1)
#define CQ_HWCAP_ASIMDDP (1ul << 20)
#endif

static uint32_t detected_features;
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;

#ifdef CQ_X86
static uint64_t read_xcr0(void) {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

/* Linux keeps AMX tile data disabled until the process asks for it (arch_prctl
 * ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); the grant covers every thread of the process. */
static int request_amx_permission(void) {
#if defined(__linux__) && defined(__x86_64__)
  const long arch_req_xcomp_perm = 0x1023;
  const long xfeature_xtiledata = 18;
  return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
#else
  return 0;
#endif
}
#endif

static void detect(void) {
  uint32_t f = 0;
#ifdef CQ_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return;
  int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1;
  if (!osxsave || !avx) return;
  uint64_t xcr0 = read_xcr0();
  int ymm_state = (xcr0 & 0x6) == 0x6;
  int zmm_state = (xcr0 & 0xe6) == 0xe6;
  int tile_state = (xcr0 & 0x60000) == 0x60000;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
  int avx2 = (b >> 5) & 1;
  int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1;
  int avx512vl = (b >> 31) & 1, avx512vnni = (c >> 11) & 1, avx512vbmi2 = (c >> 6) & 1;
  int avx512vbmi = (c >> 1) & 1;
  int amx_tile = (d >> 24) & 1, amx_int8 = (d >> 25) & 1;
  if (avx2 && fma && ymm_state) f |= CQ_CPU_AVX2;
  if ((f & CQ_CPU_AVX2) && avx512f && avx512dq && avx512bw && avx512vl && zmm_state) {
    f |= CQ_CPU_AVX512;
    if (avx512vnni) f |= CQ_CPU_AVX512VNNI;
    if (avx512vbmi2) f |= CQ_CPU_AVX512VBMI2;
    if (avx512vbmi) f |= CQ_CPU_AVX512VBMI;
  }
  if ((f & CQ_CPU_AVX512VNNI) && amx_tile && amx_int8 && tile_state && request_amx_permission()) {
    f |= CQ_CPU_AMX_INT8;
  }
#endif
#if defined(__aarch64__)
#if defined(__linux__)
  const unsigned long hwcap = getauxval(AT_HWCAP);
  if (hwcap & CQ_HWCAP_ASIMD) f |= CQ_CPU_NEON;
  if ((f & CQ_CPU_NEON) && (hwcap & CQ_HWCAP_ASIMDDP)) f |= CQ_CPU_DOTPROD;
#else
  f |= CQ_CPU_NEON; /* Advanced SIMD is part of every ARMv8-A core */
#endif
#endif
  detected_features = f;
}

uint32_t cq_cpu_features(void) {
  pthread_once(&detect_once, detect);
  return detected_features;
}

static uint32_t isa_requirements(cq_isa isa) {
  switch (isa) {
    case CQ_ISA_SCALAR: return 0;
    case CQ_ISA_AVX2: return CQ_CPU_AVX2;
    case CQ_ISA_AVX512VNNI: return CQ_CPU_AVX2 | CQ_CPU_AVX512 | CQ_CPU_AVX512VNNI;
    case CQ_ISA_AMX: return CQ_CPU_AVX2 | CQ_CPU_AVX512 | CQ_CPU_AVX512VNNI | CQ_CPU_AMX_INT8;
    case CQ_ISA_NEON: return CQ_CPU_NEON;
    case CQ_ISA_NEONDOT: return CQ_CPU_NEON | CQ_CPU_DOTPROD;
    default: return ~0u;
  }
}

int cq_isa_supported(cq_isa isa) {
  uint32_t need = isa_requirements(isa);
  return (cq_cpu_features() & need) == need;
}

static const char *const isa_names[CQ_ISA_COUNT] = {"scalar", "avx2", "avx512vnni", "amx",
                                                    "neon", "neondot"};

const char *cq_isa_name(cq_isa isa) {
  if ((unsigned)isa >= CQ_ISA_COUNT) return "unknown";
  return isa_names[isa];
}

cq_status cq_isa_parse(const char *name, cq_isa *out) {
  for (int i = 0; i < CQ_ISA_COUNT; i++) {
    if (name && strcmp(name, isa_names[i]) == 0) {
      *out = (cq_isa)i;
      return CQ_OK;
    }
  }
  return cq_fail(CQ_EINVAL, "unknown instruction set '%s' (expected scalar, avx2, avx512vnni, amx, "
                 "neon or neondot)", name ? name : "(null)");
}

cq_isa cq_isa_best(void) {
  for (int i = CQ_ISA_COUNT - 1; i > 0; i--) {
    if (cq_isa_supported((cq_isa)i)) return (cq_isa)i;
  }
  return CQ_ISA_SCALAR;
}

const char *cq_isa_missing_reason(cq_isa isa) {
  uint32_t missing = isa_requirements(isa) & ~cq_cpu_features();
  if ((unsigned)isa >= CQ_ISA_COUNT) return "not an instruction set";
  if (missing & CQ_CPU_AVX2) return "this CPU (or OS) lacks AVX2/FMA";
  if (missing & CQ_CPU_AVX512) return "this CPU (or OS) lacks AVX-512 F/BW/VL/DQ";
  if (missing & CQ_CPU_AVX512VNNI) return "this CPU lacks AVX-512 VNNI";
  if (missing & CQ_CPU_AMX_INT8) {
    return "this CPU lacks AMX-INT8, or the OS did not grant tile-data permission";
  }
  if (missing & CQ_CPU_NEON) return "this CPU is not an AArch64 one with Advanced SIMD (NEON)";
  if (missing & CQ_CPU_DOTPROD) return "this CPU lacks the ARMv8.2 dot product (SDOT/UDOT)";
  return "";
}

cq_status cq_isa_active(cq_isa *out) {
  const char *env = getenv("CQ_ISA");
  if (!env || !env[0]) {
    *out = cq_isa_best();
    return CQ_OK;
  }
  cq_isa isa = CQ_ISA_SCALAR;
  cq_status st = cq_isa_parse(env, &isa);
  if (st != CQ_OK) return cq_fail_context(st, "CQ_ISA");
  if (!cq_isa_supported(isa)) {
    return cq_fail(CQ_EUNSUPPORTED, "CQ_ISA=%s cannot run here: %s", env,
                   cq_isa_missing_reason(isa));
  }
  *out = isa;
  return CQ_OK;
}
