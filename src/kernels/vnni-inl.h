/* vpdpbusd for accumulators carried through loops of run-time length, shared by the VNNI GEMM and
 * convolution kernels (x86-64 builds compiled with AVX-512 VNNI only).
 *
 * acc += the dot products of x's unsigned bytes with w's signed bytes, four per int32 lane. An asm
 * statement with an in-out operand, because with _mm512_dpbusd_epi32 GCC 12 copies each such
 * accumulator twice per iteration (copy-in/copy-out register moves on every vpdpbusd's
 * dependency chain): measured 9.3 -> 7.9 us on the direct kernel's 2->64 conv (the GEMM kernel's
 * loop, bound by streaming the weights from L2, ran as fast either way). */
#ifndef CQ_KERNELS_VNNI_INL_H
#define CQ_KERNELS_VNNI_INL_H

#define CQ_DPBUSD(acc, x, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

#endif
