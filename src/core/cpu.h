/* CPU feature detection and instruction-set selection for the kernels.
 *
 * The features are read once into a bitmask: on x86 from cpuid + xgetbv (and on Linux the AMX
 * tile-data permission request), on AArch64 from the kernel's HWCAP (getauxval). Kernel families
 * pick their functions from the ISA returned by cq_isa_active(): the best one the CPU supports, or
 * the one the environment variable CQ_ISA names (scalar | avx2 | avx512vnni | amx on x86,
 * scalar | neon | neondot on AArch64). Naming an ISA the CPU lacks is an error with a message that
 * says which feature is missing; it is never silently downgraded, so a test that asks for a path
 * either runs it or says it could not.
 *
 * The ISAs of one architecture form a ladder: each one implies the ones below it (amx needs
 * avx512vnni, which needs avx2; neondot needs neon), because the faster paths fall back to the
 * slower kernels for the shapes they do not cover (e.g. amx uses avx512vnni kernels for single-row
 * GEMMs). The kernels of the other architecture are not built (CQ_ARCH_X86 / CQ_ARCH_ARM64 say
 * which are), and cq_isa_supported is 0 for them. */
#ifndef CQ_CORE_CPU_H
#define CQ_CORE_CPU_H

#include <stdint.h>

#include "cquant/status.h"

/* Which family of kernel files this build compiles (CMakeLists.txt picks them by file name). */
#if defined(__x86_64__)
#define CQ_ARCH_X86 1
#else
#define CQ_ARCH_X86 0
#endif
#if defined(__aarch64__)
#define CQ_ARCH_ARM64 1
#else
#define CQ_ARCH_ARM64 0
#endif

enum {
  CQ_CPU_AVX2 = 1u << 0,     /* AVX2 + FMA + OS saves ymm state */
  CQ_CPU_AVX512 = 1u << 1,   /* AVX-512 F, BW, VL, DQ + OS saves zmm state */
  CQ_CPU_AVX512VNNI = 1u << 2,
  CQ_CPU_AMX_INT8 = 1u << 3, /* AMX-TILE + AMX-INT8 + OS saves tile state + permission granted */
  CQ_CPU_NEON = 1u << 4,     /* AArch64 Advanced SIMD (HWCAP_ASIMD; mandatory in ARMv8-A) */
  CQ_CPU_DOTPROD = 1u << 5,  /* ARMv8.2 SDOT/UDOT (HWCAP_ASIMDDP) */
  CQ_CPU_AVX512VBMI2 = 1u << 6, /* AVX-512 VBMI2 (byte compress): not an ISA of the ladder, a
                                 * feature some kernels of the AVX-512 ISAs check for */
  CQ_CPU_AVX512VBMI = 1u << 7,  /* AVX-512 VBMI (byte permutes): likewise */
};

typedef enum cq_isa {
  CQ_ISA_SCALAR = 0,
  CQ_ISA_AVX2,
  CQ_ISA_AVX512VNNI,
  CQ_ISA_AMX,
  CQ_ISA_NEON,    /* AArch64 Advanced SIMD, baseline ARMv8-A */
  CQ_ISA_NEONDOT, /* NEON + the ARMv8.2 dot product (SDOT) */
  CQ_ISA_COUNT
} cq_isa;

/* Feature bitmask of this CPU (detected on the first call, thread-safe). */
uint32_t cq_cpu_features(void);

/* 1 if the CPU (and OS) can run kernels of `isa`. */
int cq_isa_supported(cq_isa isa);

/* "scalar", "avx2", "avx512vnni", "amx", "neon", "neondot"; "unknown" for anything else. */
const char *cq_isa_name(cq_isa isa);

/* Parses the names above. CQ_EINVAL with a message listing the valid names otherwise. */
cq_status cq_isa_parse(const char *name, cq_isa *out);

/* The best supported ISA (on each architecture the top of its ladder). */
cq_isa cq_isa_best(void);

/* The ISA kernels use by default: CQ_ISA from the environment if set (read on every call, so a
 * test can change it), else cq_isa_best(). CQ_EINVAL if CQ_ISA is not a valid name,
 * CQ_EUNSUPPORTED (naming the missing feature) if this CPU cannot run it. */
cq_status cq_isa_active(cq_isa *out);

/* Explains why `isa` is unsupported here ("" if it is supported). */
const char *cq_isa_missing_reason(cq_isa isa);

#endif
